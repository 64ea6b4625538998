#!/bin/sh
# Runs the end-to-end test binaries (tests/tests/*.rs) E2E_JOBS at a time (default 2):
# each starts its own gateways on ephemeral ports, in state directories and VM networks
# of its own, so binaries share nothing and run side by side. Each binary's output goes
# to target/e2e-logs/<name>.log and is printed if it fails; the end lists every binary's
# time, longest first, and fails if any binary failed.
#
#   tests/run-e2e.sh            # every binary
#   tests/run-e2e.sh billing    # those named
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
logs="$root/target/e2e-logs"

# One binary, as xargs runs it below: run-e2e.sh --one NAME EXECUTABLE.
if [ "${1:-}" = "--one" ]; then
    start=$(date +%s)
    if (cd "$root/tests" && "$3" >"$logs/$2.log" 2>&1); then
        status=ok
    else
        status=FAILED
    fi
    took=$(($(date +%s) - start))
    echo "$took $2 $status" >>"$logs/summary"
    echo "e2e: $2 $status in ${took}s"
    exit 0
fi

rm -rf "$logs"
mkdir -p "$logs"
cd "$root"
# Built (the suite's build did it already) and listed: "<name> <executable>" per binary.
# Asked of the whole workspace, as `make build` asks it, so that dependencies keep the
# features the workspace build unified (`-p skyport-e2e` alone would rebuild some without
# dev-only features), and so that the `skyport` binary the tests start is the code's
# (`--tests` alone does not build it, and a run after an edit would test the old one).
cargo build --workspace --all-targets --message-format=json-render-diagnostics \
    >"$logs/build.json"
python3 - "$logs/build.json" "$root/tests/Cargo.toml" "$@" >"$logs/binaries" <<'PY'
import json, os, sys
manifest = os.path.realpath(sys.argv[2])
wanted = set(sys.argv[3:])
found = {}
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") \
            and m["target"]["kind"] == ["test"] \
            and os.path.realpath(m["manifest_path"]) == manifest:
        found[m["target"]["name"]] = m["executable"]
missing = wanted - set(found)
if missing:
    sys.exit("e2e: no such test binary: " + " ".join(sorted(missing)))
# The longest first (as measured on a 2-core machine), so that the short ones fill in
# beside them; binaries not listed run after these, by name.
order = ["instances", "ansible", "console", "governance", "scale_out", "ec2_api", "vm_network",
         "local_vmm", "eucalyptus", "abuse", "out_of_tree", "failover", "isolation",
         "webhooks", "ec2_tools", "billing", "metering", "remote_plugins", "deployments"]
for name in sorted(found, key=lambda n: (order.index(n) if n in order else len(order), n)):
    if not wanted or name in wanted:
        print(name, found[name])
PY
count=$(wc -l <"$logs/binaries")
jobs=${E2E_JOBS:-2}
echo "e2e: $count test binaries, $jobs at a time; logs in $logs"
xargs -P "$jobs" -L 1 "$root/tests/run-e2e.sh" --one <"$logs/binaries"

echo "e2e: time per binary (seconds), longest first:"
sort -rn "$logs/summary" | sed 's/^/  /'
failed=$(awk '$3 != "ok" { print $2 }' "$logs/summary")
ran=$(wc -l <"$logs/summary")
if [ -n "$failed" ] || [ "$ran" -ne "$count" ]; then
    for name in $failed; do
        echo "==== $name: its output ====" >&2
        cat "$logs/$name.log" >&2
    done
    echo "e2e: FAILED: ${failed:-a binary did not report} ($ran of $count ran)" >&2
    exit 1
fi
echo "e2e: all $count binaries passed"
