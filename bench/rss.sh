#!/bin/sh
# Idle memory of the gateway as `make run` starts it (the embedded defaults: the local-vmm
# and metering plugins, each in a plugin host process of its own): the resident set of the
# gateway and, separately, of each plugin host, after it has been idle for a while.
#
# Usage: bench/rss.sh [idle-seconds=15]
set -eu
cd "$(dirname "$0")/.."
IDLE=${1:-15}
cargo build -q --release -p skyport-gateway -p skyport-local-vmm -p skyport-metering
state=$(mktemp -d /tmp/skyport-rss-XXXXXX)
./target/release/skyport serve --state-dir "$state" --listen 127.0.0.1:0 \
    --metrics-listen 127.0.0.1:0 >"$state/gateway.log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$state"' EXIT
i=0
until [ -s "$state/listen.json" ]; do
    i=$((i + 1))
    [ "$i" -le 600 ] && kill -0 "$pid" 2>/dev/null || { cat "$state/gateway.log" >&2; exit 1; }
    sleep 0.1
done
sleep "$IDLE"
rss() { awk '/^VmRSS/ {printf "%.1f MiB", $2 / 1024}' "/proc/$1/status"; }
echo "gateway, idle ${IDLE} s: $(rss "$pid") resident (target: under 25 MiB)"
# Which plugin each host process serves, from the admin API.
api=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api"])' "$state/listen.json")
token=$(./target/release/skyport token --tenant demo --roles admin --state-dir "$state")
curl -s --cacert "$state/certs/ca.pem" -H "Authorization: Bearer $token" \
    "https://$api/admin/plugins" >"$state/plugins.json"
python3 -c 'import json,sys
for p in json.load(open(sys.argv[1]))["plugins"]:
    print(p["name"], p["isolation"], p["pid"])' "$state/plugins.json" |
while read -r name isolation child; do
    if [ "$isolation" = process ]; then
        echo "  plugin $name, its own process (pid $child): $(rss "$child") resident"
    else
        echo "  plugin $name, in the gateway's process"
    fi
done
