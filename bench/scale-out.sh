#!/bin/sh
# Scale-out benchmark: the pipeline on shared engines (PostgreSQL storage, rate limits on
# Redis, cache coherence through Redis) against the embedded defaults (SQLite, local
# limits, local cache), measured in the same run; then two replicas on the shared engines
# loaded at once, each against a lone replica.
#
# Request: cached, authenticated GET /v1/regions, the same token (the pipeline's hot
# path: with coherence = "redis" a cached read checks the tenant's epoch as pushed to the
# replica, with no Redis round trip). Servers on CPU 0, the load generator on CPU 1. CPU
# per request from /proc/<pid>/stat (utime + stime, the gateway and its plugin processes)
# around each closed-loop run (wrk, 64 connections); open-loop p99 from oha at a fixed rate with coordinated-omission
# correction. Medians over the rounds. The tenant's rate limit is far above what one core
# serves, so a replica takes tokens from Redis once per 100 ms lease.
#
# Usage: bench/scale-out.sh [seconds-per-run] [rounds] [open-loop req/s]
set -eu
cd "$(dirname "$0")/.."
DUR=${1:-5}
ROUNDS=${2:-3}
RATE=${3:-2000}

command -v wrk >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null
}
command -v oha >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/oha" ] || cargo install --locked oha
OHA=$(command -v oha || echo "$HOME/.cargo/bin/oha")
./tests/install-deps.sh cluster >/dev/null
cargo build -q --release -p skyport-gateway -p skyport-metering

B=${CARGO_TARGET_DIR:-target}/release
STATE=$(mktemp -d)
chmod 0755 "$STATE"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export CLUSTER_DIR="$STATE/engines" CLUSTER_PG_PORT=$(free_port) CLUSTER_REDIS_PORT=$(free_port)
PIDS=""
trap 'kill $PIDS 2>/dev/null || true; ./tests/cluster.sh stop >/dev/null; sleep 1; rm -rf "$STATE"' EXIT
./tests/cluster.sh engines

# Metering off and no local-vmm: the pipeline and the shared engines are what is measured.
sed -e 's/requests_per_second = 100/requests_per_second = 10000000/' \
    -e 's/^burst = 200/burst = 10000000/' \
    -e 's/libskyport_metering.so"/libskyport_metering_not_loaded.so"/' \
    -e 's/libskyport_local_vmm.so"/libskyport_local_vmm_not_loaded.so"/' \
    config/skyport.toml >"$STATE/sqlite.toml"
sed -e 's|^\[limits\]|[limits]\nbackend = "redis"|' -e 's|^\[cache\]|[cache]\ncoherence = "redis"|' \
    "$STATE/sqlite.toml" >"$STATE/shared.toml"
cat >>"$STATE/shared.toml" <<EOT

[storage]
backend = "postgres"
url = "postgres://skyport@127.0.0.1:$CLUSTER_PG_PORT/skyport"
password_file = "$CLUSTER_DIR/pg/password"

[redis]
url = "redis://127.0.0.1:$CLUSTER_REDIS_PORT/0"
EOT

# serve NAME CONFIG -> starts a gateway on CPU 0 in $STATE/NAME; sets ADDR_<NAME>, PID_<NAME>
serve() {
    mkdir -p "$STATE/$1"
    [ "$1" = sqlite ] || [ -d "$STATE/$1/certs" ] || cp -r "$STATE/sqlite/certs" "$STATE/$1/certs"
    SKYPORT_LOG=warn taskset -c 0 "$B/skyport" serve --config "$2" --state-dir "$STATE/$1" \
        --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 2>"$STATE/$1/gateway.log" &
    eval "PID_$1=$!"
    PIDS="$PIDS $!"
    for _ in $(seq 400); do [ -s "$STATE/$1/listen.json" ] && break; sleep 0.05; done
    [ -s "$STATE/$1/listen.json" ] || { cat "$STATE/$1/gateway.log" >&2; exit 1; }
    eval "ADDR_$1=$(sed 's/.*"api":"\([^"]*\)".*/\1/' "$STATE/$1/listen.json")"
}
serve sqlite "$STATE/sqlite.toml"
serve shared "$STATE/shared.toml"
serve replica "$STATE/shared.toml"
TOKEN=$("$B/skyport" token --tenant demo --ttl 36000 --state-dir "$STATE/sqlite")
C="$STATE/sqlite/certs"

. bench/cpu.sh
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
# load CONNECTIONS URL -> the number of requests wrk completed
load() {
    taskset -c 1 wrk -t1 -c"$1" -d"${DUR}s" -H "Authorization: Bearer $TOKEN" "$2" |
        awk '/requests in/ {print $1}'
}
per_request() { awk -v a="$1" -v b="$2" -v r="$3" -v hz="$HZ" 'BEGIN {printf "%.2f", (a - b) * 1e6 / hz / r}'; }

echo "rounds=$ROUNDS seconds=$DUR; servers on CPU 0, wrk/oha on CPU 1" >&2
: >"$STATE/results"
for r in $(seq "$ROUNDS"); do
    for name in sqlite shared; do
        eval "pid=\$PID_$name addr=\$ADDR_$name"
        before=$(cpu_ticks "$pid")
        reqs=$(load 64 "https://$addr/v1/regions")
        echo "$name $(per_request "$(cpu_ticks "$pid")" "$before" "$reqs") $reqs" >>"$STATE/results"
    done
    # Two replicas loaded at once, 32 connections each.
    b1=$(cpu_ticks "$PID_shared")
    b2=$(cpu_ticks "$PID_replica")
    load 32 "https://$ADDR_shared/v1/regions" >"$STATE/r1" &
    w=$!
    load 32 "https://$ADDR_replica/v1/regions" >"$STATE/r2"
    wait $w
    echo "pair-1 $(per_request "$(cpu_ticks "$PID_shared")" "$b1" "$(cat "$STATE/r1")")" >>"$STATE/results"
    echo "pair-2 $(per_request "$(cpu_ticks "$PID_replica")" "$b2" "$(cat "$STATE/r2")")" >>"$STATE/results"
done
p99() {
    taskset -c 1 "$OHA" -z "${DUR}s" -c 64 -q "$RATE" --latency-correction --no-tui \
        --cacert "$C/ca.pem" --output-format json -H "Authorization: Bearer $TOKEN" "$1" |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.3f" % (d["latencyPercentiles"]["p99"] * 1000))'
}
for r in $(seq "$ROUNDS"); do
    echo "open-sqlite $(p99 "https://$ADDR_sqlite/v1/regions")" >>"$STATE/results"
    echo "open-shared $(p99 "https://$ADDR_shared/v1/regions")" >>"$STATE/results"
done

m() { awk -v n="$1" '$1 == n {print $2}' "$STATE/results" | median; }
sq=$(m sqlite)
sh=$(m shared)
p1=$(m pair-1)
p2=$(m pair-2)
printf 'cpu per request: sqlite+local %s us, postgres+redis %s us = %.2fx\n' "$sq" "$sh" "$(awk -v a="$sh" -v b="$sq" 'BEGIN {print a / b}')"
printf 'two replicas at once: %s us and %s us per request = %.2fx and %.2fx of a lone replica\n' "$p1" "$p2" \
    "$(awk -v a="$p1" -v b="$sh" 'BEGIN {print a / b}')" "$(awk -v a="$p2" -v b="$sh" 'BEGIN {print a / b}')"
o1=$(m open-sqlite)
o2=$(m open-shared)
printf 'open-loop p99 at %s req/s: sqlite+local %s ms, postgres+redis %s ms = %.2fx\n' "$RATE" "$o1" "$o2" \
    "$(awk -v a="$o2" -v b="$o1" 'BEGIN {print a / b}')"
