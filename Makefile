# Skyport's two commands (see README.md):
#   make run    builds everything and starts Skyport on its embedded defaults
#   make test   installs what the tests need, builds, and runs the whole test suite

CARGO ?= cargo

.PHONY: run test build build-release deps-run deps-test lint bench

run: deps-run build-release
	./target/release/skyport serve

test: deps-test lint build
	$(CARGO) test --workspace --all-targets --no-fail-fast

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
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench: build-release
	./bench/pipeline.sh
