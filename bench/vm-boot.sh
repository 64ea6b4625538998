#!/bin/sh
# local-vmm boot benchmark: create -> running through Skyport (POST /v1/instances?wait=running)
# against a cold boot of the same image with a bare QEMU command line, alternating, in one
# run. Skyport starts skyport-tiny VMs from a snapshot of the image: the first create takes
# it (reported apart, as "first create"); the rounds then restore from it.
# Also the gateway's RSS with 0 VMs and with the VMs of the last round alive.
#
# Usage: bench/vm-boot.sh [boots-each=10]
set -eu
cd "$(dirname "$0")/.."
N=${1:-10}
./tests/install-deps.sh test >/dev/null
cargo build -q --release -p skyport-gateway -p skyport-local-vmm
B=${CARGO_TARGET_DIR:-target}/release
G=$(pwd)/target/guest/skyport-tiny
STATE=$(mktemp -d)
stop() {
    kill $SKY 2>/dev/null || true
    pkill -f "qemu-system-x86_64 -name bench-" 2>/dev/null || true
    pkill -f "$STATE/plugins" 2>/dev/null || true
    # The VMs write into their directories until they are gone.
    for _ in $(seq 50); do pgrep -f "$STATE/" >/dev/null || break; sleep 0.1; done
    rm -rf "$STATE"
}
trap stop EXIT
sed "s|image_library = \"images\"|image_library = \"$(pwd)/target/guest\"|" config/skyport.toml >"$STATE/skyport.toml"
SKYPORT_LOG=warn $B/skyport serve --config "$STATE/skyport.toml" --state-dir "$STATE" \
    --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 2>"$STATE/skyport.log" &
SKY=$!
for _ in $(seq 200); do [ -s "$STATE/listen.json" ] && break; sleep 0.05; done
API=$(sed 's/.*"api":"\([^"]*\)".*/\1/' "$STATE/listen.json")
TOKEN=$($B/skyport token --tenant demo --state-dir "$STATE")
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
now() { date +%s.%N; }
RSS0=$(rss $SKY)

bare() {
    d="$STATE/bare-$1"; mkdir -p "$d"
    qemu-img create -q -f qcow2 -b "$G/disk.qcow2" -F qcow2 "$d/disk.qcow2"
    t0=$(now)
    qemu-system-x86_64 -name "bench-$1" -machine q35 -accel tcg,tb-size=64 -m 128 -smp 1 \
        -nodefaults -no-user-config -display none -serial "file:$d/serial.log" \
        -kernel "$G/vmlinuz" -initrd "$G/initramfs.gz" -append 'console=ttyS0 quiet panic=-1' \
        -qmp "unix:$d/qmp.sock,server=on,wait=off" -drive "file=$d/disk.qcow2,if=virtio,format=qcow2" \
        -device virtio-balloon-pci -pidfile "$d/pid" </dev/null >/dev/null 2>&1 &
    until grep -q SKYPORT-GUEST-READY "$d/serial.log" 2>/dev/null; do sleep 0.01; done
    t1=$(now)
    kill "$(cat "$d/pid")"
    echo "$t0 $t1" | awk '{printf "%.3f\n", $2 - $1}'
}

skyport() {
    t0=$(now)
    curl -sf --cacert "$STATE/certs/ca.pem" -H "Authorization: Bearer $TOKEN" \
        -d '{"image": "skyport-tiny", "instance_type": "sp.micro"}' \
        "https://$API/v1/instances?wait=running" >"$STATE/last.json"
    t1=$(now)
    echo "$t0 $t1" | awk '{printf "%.3f\n", $2 - $1}'
}

: >"$STATE/bare"; : >"$STATE/sky"
FIRST=$(skyport)
ADMIN=$($B/skyport token --tenant demo --roles admin --state-dir "$STATE")
SNAPSHOTS=$(curl -sf --cacert "$STATE/certs/ca.pem" -H "Authorization: Bearer $ADMIN" -d '{}' \
    "https://$API/admin/plugins/local-vmm/ops/snapshots.list")
echo "$SNAPSHOTS" | grep -q '"taken_at"' || { echo "no snapshot was taken: $SNAPSHOTS" >&2; exit 1; }
for i in $(seq "$N"); do
    bare "$i" >>"$STATE/bare"
    skyport >>"$STATE/sky"
done
RSS_N=$(rss $SKY)
pct() { sort -n "$1" | awk -v p="$2" '{v[NR]=$1} END {i=int((NR-1)*p)+1; print v[i]}'; }
printf 'boots: %s each, alternating; TCG, sp.micro (128 MiB, 1 vCPU)\n' "$N"
printf '%-22s %8s %8s\n' "" p50 p95
printf '%-22s %8s %8s\n' "bare QEMU -> READY" "$(pct "$STATE/bare" 0.5)" "$(pct "$STATE/bare" 0.95)"
printf '%-22s %8s %8s\n' "Skyport -> running" "$(pct "$STATE/sky" 0.5)" "$(pct "$STATE/sky" 0.95)"
printf '%-22s %8s\n' "first create" "$FIRST"
awk -v a="$(pct "$STATE/sky" 0.5)" -v b="$(pct "$STATE/bare" 0.5)" 'BEGIN {printf "p50 ratio, Skyport / bare cold boot: %.2fx\n", a / b}'
echo "gateway RSS: ${RSS0} KiB with 0 VMs, ${RSS_N} KiB with $N VMs running"
