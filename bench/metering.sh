#!/bin/sh
# Metering benchmark: durable ingest rate of the ledger (SQLite, WAL, synchronous=FULL, one
# transaction per batch of the gateway tap's size) and bill generation over one tenant's
# month of events (bench/src/metering.rs). Each ingest round writes a fresh ledger in a
# temporary directory; the bill is computed over the last one.
#
# LEDGER=postgres measures the shared ledger instead, on a PostgreSQL server the benchmark
# starts on a loopback port (fsync on, a fresh database per round; needs postgresql-15:
# tests/install-deps.sh test); WRITERS=n deals the batches to n connections at once, as n
# replicas would.
#
# Usage: [LEDGER=sqlite|postgres] [WRITERS=1] bench/metering.sh [events=1000000] [rounds=3] [batch=512]
set -eu
cd "$(dirname "$0")/.."
cargo build -q --release -p skyport-bench --bin skyport-metering-bench
exec "${CARGO_TARGET_DIR:-target}"/release/skyport-metering-bench "$@"
