#!/bin/sh
# The longer fuzz run: every target (tests/fuzz) optimised and under AddressSanitizer for
# SECONDS each (default 300), continuing from the corpus earlier runs left in
# target/fuzz/corpus/. Prints, per target, executions, executions a second, coverage and
# corpus size; fails on the first crash (tests/fuzz/README.md says what to do then).
#
# Usage: bench/fuzz.sh [seconds-per-target] [target...]
set -eu
cd "$(dirname "$0")/.."
seconds=${1:-300}
[ $# -gt 0 ] && shift
FUZZ_MODE=deep exec ./tests/fuzz/run.sh "$seconds" "$@"
