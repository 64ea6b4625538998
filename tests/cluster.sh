#!/bin/sh
# A local two-replica cluster for trying scale-out (docs/scale-out.md): PostgreSQL and
# Redis (Debian's, as shipped) on loopback ports with data under $CLUSTER_DIR, and two
# gateways sharing them, each on its own port, serving the same certificates and tokens.
# Replica 1 also runs local-vmm (QEMU VMs); replica 2 fronts the same state without it.
#
#   make cluster              # or: tests/cluster.sh start
#   tests/cluster.sh engines  # PostgreSQL and Redis only (bench/scale-out.sh uses this)
#   tests/cluster.sh stop     # stops everything by PID; the data stays in $CLUSTER_DIR
#
# Not for production: the database and Redis have no TLS and listen on 127.0.0.1 only.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${CLUSTER_DIR:-/tmp/skyport-cluster}
pg_port=${CLUSTER_PG_PORT:-55432}
redis_port=${CLUSTER_REDIS_PORT:-56379}
bin=${SKYPORT_BIN:-"$root/target/release/skyport"}

as_postgres() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

stop() {
    for pidfile in "$dir"/replica-2.pid "$dir"/replica-1.pid "$dir"/redis.pid; do
        if [ -f "$pidfile" ]; then
            kill "$(cat "$pidfile")" 2>/dev/null || true
            rm -f "$pidfile"
        fi
    done
    if [ -f "$dir/pg/data/postmaster.pid" ]; then
        kill -INT "$(head -n 1 "$dir/pg/data/postmaster.pid")" 2>/dev/null || true
    fi
    echo "cluster: stopped (data kept in $dir)"
}

wait_for_file() {
    i=0
    until [ -f "$1" ]; do
        i=$((i + 1))
        if [ "$i" -gt 600 ]; then
            echo "cluster: $2 did not start; see $3" >&2
            exit 1
        fi
        sleep 0.1
    done
}

engines() {
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$pg_bin" ] && command -v redis-server >/dev/null 2>&1 || {
        echo "cluster: PostgreSQL and Redis are needed: tests/install-deps.sh test installs them" >&2
        exit 1
    }
    mkdir -p "$dir"
    chmod 0755 "$dir"
    if [ ! -d "$dir/pg/data" ]; then
        mkdir -p "$dir/pg"
        head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$dir/pg/password"
        [ "$(id -u)" = 0 ] && chown -R postgres "$dir/pg"
        as_postgres "$pg_bin/initdb" -U skyport --auth=scram-sha-256 \
            --pwfile="$dir/pg/password" -D "$dir/pg/data" >"$dir/pg/initdb.log"
    fi
    as_postgres "$pg_bin/postgres" -D "$dir/pg/data" -p "$pg_port" \
        -c listen_addresses=127.0.0.1 -c unix_socket_directories= >"$dir/pg/server.log" 2>&1 &
    i=0
    until grep -q "ready to accept connections" "$dir/pg/server.log" 2>/dev/null; do
        i=$((i + 1))
        [ "$i" -gt 300 ] && { echo "cluster: PostgreSQL did not start; see $dir/pg/server.log" >&2; exit 1; }
        sleep 0.1
    done
    PGPASSWORD=$(cat "$dir/pg/password") psql -h 127.0.0.1 -p "$pg_port" -U skyport -d postgres \
        -tAc "SELECT 1 FROM pg_database WHERE datname = 'skyport'" | grep -q 1 ||
        PGPASSWORD=$(cat "$dir/pg/password") psql -h 127.0.0.1 -p "$pg_port" -U skyport \
            -d postgres -qc "CREATE DATABASE skyport"

    redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
        --dir "$dir" >"$dir/redis.log" 2>&1 &
    echo $! >"$dir/redis.pid"
    until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.1; done
}

start() {
    [ -x "$bin" ] || {
        echo "cluster: build first: make build-release" >&2
        exit 1
    }
    engines

    shared="
[storage]
backend = \"postgres\"
url = \"postgres://skyport@127.0.0.1:$pg_port/skyport\"
password_file = \"$dir/pg/password\"

[redis]
url = \"redis://127.0.0.1:$redis_port/0\"
"
    sed -e 's|^config = { image_library = "images" }|config = { image_library = "'"$root"'/var/images" }|' \
        -e 's|^\[limits\]|[limits]\nbackend = "redis"|' \
        -e 's|^\[cache\]|[cache]\ncoherence = "redis"|' \
        -e 's|^file = "libskyport_metering.so"|&\nconfig = { ledger = { backend = "postgres", url = "postgres://skyport@127.0.0.1:'"$pg_port"'/skyport", password_file = "'"$dir"'/pg/password" } }|' \
        "$root/config/skyport.toml" >"$dir/replica-1.toml"
    printf '%s' "$shared" >>"$dir/replica-1.toml"
    # Replica 2 without local-vmm: a VM runs where its plugin runs (docs/scale-out.md).
    awk 'BEGIN { RS = ""; ORS = "\n\n" } !/name = "local-vmm"/' "$dir/replica-1.toml" >"$dir/replica-2.toml"

    for n in 1 2; do
        state="$dir/replica-$n"
        mkdir -p "$state"
        if [ "$n" = 2 ] && [ ! -d "$state/certs" ]; then
            cp -r "$dir/replica-1/certs" "$state/certs"
        fi
        rm -f "$state/listen.json"
        "$bin" serve --config "$dir/replica-$n.toml" --state-dir "$state" \
            --listen "127.0.0.1:$((8442 + n))" --metrics-listen "127.0.0.1:$((9089 + n))" \
            >"$state/gateway.log" 2>&1 &
        echo $! >"$dir/replica-$n.pid"
        wait_for_file "$state/listen.json" "replica $n" "$state/gateway.log"
    done
    cat <<EOT
cluster: PostgreSQL 127.0.0.1:$pg_port, Redis 127.0.0.1:$redis_port, data in $dir
cluster: replica 1 https://127.0.0.1:8443 (with local-vmm), replica 2 https://127.0.0.1:8444
  token:  $bin token --tenant demo --state-dir $dir/replica-1
  try:    curl --cacert $dir/replica-1/certs/ca.pem -H "Authorization: Bearer \$TOKEN" https://127.0.0.1:8444/v1/regions
  stop:   tests/cluster.sh stop
EOT
}

case "${1:-start}" in
start) start ;;
engines) engines ;;
stop) stop ;;
*)
    echo "usage: $0 start|engines|stop" >&2
    exit 2
    ;;
esac
