#!/bin/sh
# Pipeline benchmark: cached, authenticated GET /v1/regions through the whole Skyport
# pipeline against a lower bound measured in the same run (hyper + rustls + jsonwebtoken,
# verifying the JWT on every request; bench/src/lowerbound.rs).
#
# Servers are pinned to CPU 0, the load generator (wrk, 64 keep-alive connections, closed
# loop) to CPU 1. Server CPU time per request comes from /proc/<pid>/stat (utime + stime)
# around each run. Two token modes: the same token on every request (Skyport's verified-token
# cache applies) and a new token on every request (it cannot).
#
# A second measurement loads both servers at the same time (each by its own wrk), which
# keeps the ratio steady on a shared machine.
#
# By default the gateway runs as shipped (config/skyport.toml, what `make run` starts):
# the metering plugin loaded, every request's event stored durably in its ledger.
# METERING=off measures the pipeline without it. ISOLATION says where the metering plugin
# runs: process (its own process, the shipped default) or in-process.
# Skyport's CPU is the gateway's plus its plugin processes'.
#
# Usage: [METERING=on|off] [ISOLATION=process|in-process] bench/pipeline.sh [seconds-per-run] [rounds]
set -eu
cd "$(dirname "$0")/.."
DUR=${1:-5}
ROUNDS=${2:-3}
METERING=${METERING:-on}
ISOLATION=${ISOLATION:-process}

command -v wrk >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null
}
command -v oha >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/oha" ] || cargo install --locked oha
OHA=$(command -v oha || echo "$HOME/.cargo/bin/oha")
command -v taskset >/dev/null 2>&1 || { echo "taskset (util-linux) is required" >&2; exit 1; }

cargo build -q --release -p skyport-gateway -p skyport-bench -p skyport-metering
B=${CARGO_TARGET_DIR:-target}/release
STATE=$(mktemp -d)
trap 'kill $SKY $LB 2>/dev/null || true; rm -rf "$STATE"' EXIT

# Rate limit far above what one core can serve; access log off (warn level) in both servers.
case "$METERING" in
on) PLUGIN=libskyport_metering.so ;;
off) PLUGIN=libskyport_metering_not_loaded.so ;;
*) echo "METERING must be on or off" >&2; exit 2 ;;
esac
case "$ISOLATION" in
process | in-process) ;;
*) echo "ISOLATION must be process or in-process" >&2; exit 2 ;;
esac
sed -e 's/requests_per_second = 100/requests_per_second = 10000000/' \
    -e 's/^burst = 200/burst = 10000000/' \
    -e "s/libskyport_metering.so\"/$PLUGIN\"\nisolation = \"$ISOLATION\"/" config/skyport.toml > "$STATE/skyport.toml"
SKYPORT_LOG=warn taskset -c 0 $B/skyport serve --config "$STATE/skyport.toml" --state-dir "$STATE" \
    --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 2>"$STATE/skyport.log" &
SKY=$!
for _ in $(seq 200); do [ -s "$STATE/listen.json" ] && break; sleep 0.05; done
SKY_ADDR=$(sed 's/.*"api":"\([^"]*\)".*/\1/' "$STATE/listen.json")
C="$STATE/certs"
LB_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
taskset -c 0 $B/skyport-lowerbound "127.0.0.1:$LB_PORT" "$C/server.pem" "$C/server-key.pem" "$C/jwt-public.pem" 2>"$STATE/lb.log" &
LB=$!
sleep 0.5

TOKEN=$($B/skyport token --tenant demo --ttl 36000 --state-dir "$STATE")
# New-token runs against Skyport each get their own slice of tokens (room for 20,000 req/s),
# so that no token reaches Skyport twice in the whole benchmark: a token seen twice is
# stored by its verified-token cache, and a third sighting would be a cache hit.
SLICE=$((20000 * DUR))
$B/skyport token --tenant demo --ttl 36000 --count $((SLICE * 3 * ROUNDS)) --state-dir "$STATE" >"$STATE/tokens.txt"
cat >"$STATE/rotate.lua" <<'LUA'
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do tokens[#tokens + 1] = line end
-- Each run starts at its own offset so that no run reuses another run's tokens.
local i = tonumber(os.getenv("TOKEN_OFFSET") or "0")
request = function()
  i = i + 1
  if i > #tokens then i = 1 end
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. tokens[i] })
end
LUA
export TOKENS="$STATE/tokens.txt"

. bench/cpu.sh

# run NAME PID URL MODE -> prints "NAME rps cpu_us_per_req p50 p99"
run() {
    before=$(cpu_ticks "$2")
    if [ "$4" = same ]; then
        out=$(taskset -c 1 wrk -t1 -c64 -d"${DUR}s" --latency -H "Authorization: Bearer $TOKEN" "$3")
    else
        out=$(taskset -c 1 wrk -t1 -c64 -d"${DUR}s" --latency -s "$STATE/rotate.lua" "$3")
    fi
    after=$(cpu_ticks "$2")
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $5}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
    cpu=$(awk -v a="$after" -v b="$before" -v r="$reqs" -v hz="$HZ" 'BEGIN {printf "%.1f", (a - b) * 1e6 / hz / r}')
    [ "$4" = same ] || [ "$reqs" -le "$SLICE" ] || echo "warning: $1 used more than its $SLICE tokens" >&2
    echo "$1 $rps $cpu $p50 $p99 ${non2xx:-0}"
}

median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

echo "rounds=$ROUNDS seconds=$DUR metering=$METERING isolation=$ISOLATION; servers on CPU 0, wrk on CPU 1, 64 connections" >&2
: >"$STATE/results"
for r in $(seq "$ROUNDS"); do
    for mode in same new; do
        run "lowerbound-$mode" $LB "https://127.0.0.1:$LB_PORT/v1/regions" $mode >>"$STATE/results"
        export TOKEN_OFFSET=$(( (r - 1) * SLICE ))
        run "skyport-$mode" $SKY "https://$SKY_ADDR/v1/regions" $mode >>"$STATE/results"
    done
    echo "round $r done" >&2
done

printf '%-18s %12s %14s %10s %10s %8s\n' server "req/s(med)" "cpu_us/req" "p50" "p99" "non2xx"
for name in lowerbound-same skyport-same lowerbound-new skyport-new; do
    rps=$(awk -v n=$name '$1 == n {print $2}' "$STATE/results" | median)
    cpu=$(awk -v n=$name '$1 == n {print $3}' "$STATE/results" | median)
    p50=$(awk -v n=$name '$1 == n {print $4}' "$STATE/results" | sort | head -1)
    p99=$(awk -v n=$name '$1 == n {print $5}' "$STATE/results" | sed -n '1p')
    bad=$(awk -v n=$name '$1 == n {s += $6} END {print s + 0}' "$STATE/results")
    printf '%-18s %12s %14s %10s %10s %8s\n' $name "$rps" "$cpu" "$p50" "$p99" "$bad"
done
for mode in same new; do
    lb=$(awk -v n=lowerbound-$mode '$1 == n {print $3}' "$STATE/results" | median)
    sk=$(awk -v n=skyport-$mode '$1 == n {print $3}' "$STATE/results" | median)
    awk -v m=$mode -v a="$sk" -v b="$lb" 'BEGIN {printf "cpu per request, %s token: skyport / lower bound = %.2fx\n", m, a / b}'
done

# The same ratio measured with both servers loaded at the same time (each by its own wrk on
# CPU 1), so that noise from the rest of the machine falls on both alike: sequential runs
# on a shared machine vary by 20-30% between runs of the same server.
: >"$STATE/paired"
# load URL MODE TOKEN_OFFSET OUT: one closed-loop wrk run in the background.
load() {
    if [ "$2" = same ]; then
        TOKEN_OFFSET=$3 taskset -c 1 wrk -t1 -c64 -d"${DUR}s" -H "Authorization: Bearer $TOKEN" "$1" >"$4" &
    else
        TOKEN_OFFSET=$3 taskset -c 1 wrk -t1 -c64 -d"${DUR}s" -s "$STATE/rotate.lua" "$1" >"$4" &
    fi
}
for r in $(seq $((ROUNDS * 2))); do
    for mode in same new; do
        lb0=$(cpu_ticks $LB)
        sk0=$(cpu_ticks $SKY)
        load "https://127.0.0.1:$LB_PORT/v1/regions" $mode 0 "$STATE/wa"
        WA=$!
        load "https://$SKY_ADDR/v1/regions" $mode $(( (ROUNDS + r - 1) * SLICE )) "$STATE/wb"
        WB=$!
        wait $WA $WB
        lb1=$(cpu_ticks $LB)
        sk1=$(cpu_ticks $SKY)
        ra=$(awk '/requests in/ {print $1}' "$STATE/wa")
        rb=$(awk '/requests in/ {print $1}' "$STATE/wb")
        [ $mode = same ] || [ "$rb" -le "$SLICE" ] || echo "warning: a paired run used more than its $SLICE tokens" >&2
        awk -v m=$mode -v a=$((lb1 - lb0)) -v b=$((sk1 - sk0)) -v ra="$ra" -v rb="$rb" \
            'BEGIN {print m, (b / rb) / (a / ra)}' >>"$STATE/paired"
    done
done
for mode in same new; do
    awk -v m=$mode '$1 == m {print $2}' "$STATE/paired" | sort -n |
        awk -v m=$mode '{v[NR] = $1} END {printf "cpu per request, %s token, both servers loaded at once: skyport / lower bound = %.2fx (median of %d, range %.2f-%.2f)\n", m, v[int((NR + 1) / 2)], NR, v[1], v[NR]}'
done

# Open loop: a fixed request rate at 70% of the lower bound's closed-loop peak (same token),
# with oha's coordinated-omission correction; p99 per server, median over the rounds.
peak=$(awk '$1 == "lowerbound-same" {print $2}' "$STATE/results" | median)
RATE=$(awk -v p="$peak" 'BEGIN {printf "%d", p * 0.7}')
echo "open loop at $RATE req/s (70% of the lower bound's peak $peak)" >&2
p99() {
    taskset -c 1 "$OHA" -z "${DUR}s" -c 64 -q "$RATE" --latency-correction --no-tui \
        --cacert "$C/ca.pem" --output-format json -H "Authorization: Bearer $TOKEN" "$1" |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.3f %d" % (d["latencyPercentiles"]["p99"] * 1000, sum(v for k, v in d["statusCodeDistribution"].items() if not k.startswith("2"))))'
}
: >"$STATE/open"
for r in $(seq "$ROUNDS"); do
    echo "lowerbound $(p99 "https://127.0.0.1:$LB_PORT/v1/regions")" >>"$STATE/open"
    echo "skyport $(p99 "https://$SKY_ADDR/v1/regions")" >>"$STATE/open"
done
lb=$(awk '$1 == "lowerbound" {print $2}' "$STATE/open" | median)
sk=$(awk '$1 == "skyport" {print $2}' "$STATE/open" | median)
bad=$(awk '{s += $3} END {print s + 0}' "$STATE/open")
awk -v a="$sk" -v b="$lb" -v r="$RATE" -v bad="$bad" 'BEGIN {printf "open-loop p99 at %d req/s: skyport %.3f ms, lower bound %.3f ms = %.2fx (non-2xx: %d)\n", r, a, b, a / b, bad}'
