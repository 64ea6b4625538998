#!/bin/sh
# The web console's instances page with 1,000 instances, in Debian's headless Chromium:
# first contentful paint, the time the 1,000-row table is drawn, and the console's bytes
# transferred, medians of 9 loads beside the same page with no instances (tests/benches/
# console.rs); then the console's files compressed (gzip -9), as a CDN-less network would
# carry them if compressed.
#
# Usage: [SKYPORT_BENCH_INSTANCES=n] bench/console.sh   (n instances, 1,000 unless set)
set -eu
cd "$(dirname "$0")/.."
./tests/install-deps.sh test >/dev/null
cargo build -q --release -p skyport-gateway -p skyport-local-vmm -p skyport-metering -p skyport-ec2
cargo bench -q -p skyport-e2e --bench console
raw=$(cat gateway/src/console/web/* | wc -c)
gz=0
for f in gateway/src/console/web/*; do gz=$((gz + $(gzip -9 -c "$f" | wc -c))); done
echo "console files: $raw bytes, $gz bytes gzip -9 (each file compressed on its own)"
