#!/bin/sh
# Flood benchmark: a well-behaved tenant's latency with and without a flood of 2,000 idle
# TLS connections plus 200 authenticated requests whose bodies arrive a byte a second
# (bench/src/flood.rs), from another tenant spread over several loopback addresses.
#
# The well-behaved tenant (demo) sends GET /v1/whoami at a fixed rate (oha, open loop with
# coordinated-omission correction, 4 connections opened before the flood); the attacker is
# tenant acme. Rounds alternate unloaded and flooded runs; the figure is the median p99
# over the rounds, flooded over unloaded, measured in the same run. Gateway on CPU 0, oha
# and the flood on CPU 1.
#
# Usage: bench/flood.sh [seconds-per-run] [rounds] [rate]
set -eu
cd "$(dirname "$0")/.."
DUR=${1:-10}
ROUNDS=${2:-3}
RATE=${3:-200}
IDLE=${IDLE:-2000}
SLOW=${SLOW:-200}

command -v oha >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/oha" ] || cargo install --locked oha
OHA=$(command -v oha || echo "$HOME/.cargo/bin/oha")
command -v taskset >/dev/null 2>&1 || { echo "taskset (util-linux) is required" >&2; exit 1; }
# 2,000 connections on each side, with room to spare.
ulimit -n 16384

cargo build -q --release -p skyport-gateway -p skyport-bench
B=${CARGO_TARGET_DIR:-target}/release
STATE=$(mktemp -d)
FLOOD=
trap 'kill $SKY $FLOOD 2>/dev/null || true; rm -rf "$STATE"' EXIT

# Rate limits far above what is sent: the flood's requests must reach the body read.
sed -e 's/requests_per_second = 100/requests_per_second = 100000/' \
    -e 's/^burst = 200/burst = 100000/' \
    -e 's/^default_requests_per_second = 50/default_requests_per_second = 100000/' \
    -e 's/^default_burst = 100/default_burst = 100000/' \
    config/skyport.toml >"$STATE/skyport.toml"
SKYPORT_LOG=warn taskset -c 0 $B/skyport serve --config "$STATE/skyport.toml" --state-dir "$STATE" \
    --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 2>"$STATE/skyport.log" &
SKY=$!
for _ in $(seq 200); do [ -s "$STATE/listen.json" ] && break; sleep 0.05; done
ADDR=$(sed 's/.*"api":"\([^"]*\)".*/\1/' "$STATE/listen.json")
METRICS=$(sed 's/.*"metrics":"\([^"]*\)".*/\1/' "$STATE/listen.json")
C="$STATE/certs"
TENANT_TOKEN=$($B/skyport token --tenant demo --ttl 36000 --state-dir "$STATE")
ATTACKER_TOKEN=$($B/skyport token --tenant acme --ttl 36000 --state-dir "$STATE")

# p99 (ms), p50 (ms) and non-2xx count of one open-loop run.
measure() {
    taskset -c 1 "$OHA" -z "${DUR}s" -c 4 -q "$RATE" --latency-correction --no-tui \
        --cacert "$C/ca.pem" --output-format json -H "Authorization: Bearer $TENANT_TOKEN" \
        "https://$ADDR/v1/whoami" |
        python3 -c 'import json,sys; d=json.load(sys.stdin); p=d["latencyPercentiles"]; print("%.3f %.3f %d" % (p["p99"] * 1000, p["p50"] * 1000, sum(v for k, v in d["statusCodeDistribution"].items() if not k.startswith("2"))))'
}

rss_mb() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$SKY/status"; }

echo "rounds=$ROUNDS seconds=$DUR rate=$RATE req/s; flood: $IDLE idle TLS connections + $SLOW slow bodies" >&2
: >"$STATE/results"
for r in $(seq "$ROUNDS"); do
    echo "unloaded $(measure) $(rss_mb)" >>"$STATE/results"
    taskset -c 1 $B/skyport-flood "$ADDR" "$C/ca.pem" "$ATTACKER_TOKEN" "$IDLE" "$SLOW" >"$STATE/flood.log" 2>&1 &
    FLOOD=$!
    for _ in $(seq 600); do grep -q '^ready' "$STATE/flood.log" && break; sleep 0.1; done
    grep -q '^ready' "$STATE/flood.log" || { echo "the flood did not open its connections:" >&2; tail -3 "$STATE/flood.log" >&2; exit 1; }
    open=$(curl -s "http://$METRICS/metrics" | awk '/^skyport_connections_open / {print $2}')
    echo "flooded $(measure) $(rss_mb) ${open:-?}" >>"$STATE/results"
    tail -1 "$STATE/flood.log" | sed "s/^/round $r flood: /" >&2
    kill $FLOOD
    wait $FLOOD 2>/dev/null || true
    FLOOD=
    sleep 2
done

median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
printf '%-9s %10s %10s %8s %8s %s\n' run "p99 ms" "p50 ms" non2xx "rss MB" "(each round)"
while read -r name p99 p50 bad rss open; do
    printf '%-9s %10s %10s %8s %8s %s\n' "$name" "$p99" "$p50" "$bad" "$rss" "${open:+connections open: $open}"
done <"$STATE/results"
un=$(awk '$1 == "unloaded" {print $2}' "$STATE/results" | median)
fl=$(awk '$1 == "flooded" {print $2}' "$STATE/results" | median)
awk -v a="$fl" -v b="$un" -v n="$ROUNDS" 'BEGIN {printf "well-behaved tenant p99, median of %d: flooded %.3f ms / unloaded %.3f ms = %.2fx\n", n, a, b, a / b}'
