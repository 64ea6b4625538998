# Skyport's two commands (see README.md):
#   make run    builds everything and starts Skyport on its embedded defaults
#   make test   installs what the tests need, builds, and runs the whole test suite

CARGO ?= cargo

# Seconds each fuzz target runs in `make test` (tests/fuzz/README.md).
FUZZ_SECONDS ?= 15

.PHONY: run cluster test build build-release deps-run deps-test lint fuzz-short bench

run: deps-run build-release
	./target/release/skyport serve

# A test run is a clean build: incremental caches would only take disk (several GiB).
# Two replicas sharing PostgreSQL and Redis, for trying scale-out (docs/scale-out.md).
cluster: deps-run build-release
	./tests/install-deps.sh cluster
	./tests/cluster.sh start

test: export CARGO_INCREMENTAL = 0
# Unit and crate tests first; then the end-to-end binaries, two at a time (tests/run-e2e.sh).
test: deps-test lint build fuzz-short
	$(CARGO) test --workspace --all-targets --no-fail-fast --exclude skyport-e2e
	./tests/run-e2e.sh

build:
	$(CARGO) build --workspace --all-targets

build-release:
	$(CARGO) build --release -p skyport-gateway -p skyport-local-vmm -p skyport-metering -p skyport-ec2 -p skyport-eucalyptus

deps-run:
	./tests/install-deps.sh run

deps-test:
	./tests/install-deps.sh test

lint:
	$(CARGO) fmt --all -- --check
	rustfmt --edition 2021 --check tests/fuzz/fuzz_targets/*.rs
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fuzz-short:
	./tests/fuzz/run.sh $(FUZZ_SECONDS)

bench: build-release
	./bench/pipeline.sh
