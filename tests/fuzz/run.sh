#!/bin/sh
# Builds and runs every fuzz target (or those named) for SECONDS each, from the seeds in
# seeds/<target>/ plus a fresh corpus, and fails on the first crash, panic, timeout or
# memory blow-up, leaving the input that caused it in target/fuzz/artifacts/<target>/.
#
#   tests/fuzz/run.sh SECONDS [target...]      # short: unoptimised, no sanitizer (CI)
#   FUZZ_MODE=deep tests/fuzz/run.sh SECONDS   # optimised, AddressSanitizer (bench/)
#
# Needs the nightly toolchain and cargo-fuzz (tests/install-deps.sh test installs both).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
seconds=${1:?usage: run.sh SECONDS [target...]}
shift
targets=${*:-"sigv4 ec2_query ec2_xml jwt config cel_rules"}

command -v cargo-fuzz >/dev/null 2>&1 || {
    echo "fuzz: cargo-fuzz is missing; run tests/install-deps.sh test" >&2
    exit 1
}
cargo +nightly --version >/dev/null 2>&1 || {
    echo "fuzz: the nightly toolchain is missing; run tests/install-deps.sh test" >&2
    exit 1
}

case "${FUZZ_MODE:-short}" in
short) build="--dev -s none" ;;
deep) build="-s address" ;;
*)
    echo "fuzz: FUZZ_MODE is short or deep" >&2
    exit 2
    ;;
esac

out="$root/target/fuzz"
# shellcheck disable=SC2086 # $build holds separate flags
cd "$here"
# One build for every target; `run` then finds them built.
# shellcheck disable=SC2086
cargo +nightly fuzz build --fuzz-dir "$here" --target-dir "$out" $build
for target in $targets; do
    corpus="$out/corpus/$target"
    artifacts="$out/artifacts/$target"
    mkdir -p "$corpus" "$artifacts" "$here/seeds/$target"
    echo "fuzz: $target for ${seconds}s"
    # shellcheck disable=SC2086
    if ! cargo +nightly fuzz run --fuzz-dir "$here" --target-dir "$out" $build "$target" \
        "$corpus" "$here/seeds/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 >"$out/$target.log" 2>&1; then
        tail -n 60 "$out/$target.log" >&2
        echo "fuzz: $target FAILED; the input is in $artifacts/ (see tests/fuzz/README.md)" >&2
        exit 1
    fi
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)|^#[0-9]+[[:space:]]+DONE' "$out/$target.log" |
        sed "s/^/fuzz: $target: /"
done
