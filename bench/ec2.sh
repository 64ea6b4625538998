#!/bin/sh
# EC2 front-door benchmark, two measurements in one run:
#
# 1. Throughput of SigV4-authenticated, cached DescribeInstances (POST /, form body)
#    and DescribeRegions (the same read as the JWT one: the tenant's regions) against the
#    spine's JWT path (cached GET /v1/regions), all through Skyport: wrk,
#    64 keep-alive connections, Skyport pinned to CPU 0 and wrk to CPU 1; after a warm-up,
#    alternating rounds, each JWT round paired with the SigV4 round after it; medians of
#    the pairs' ratios (throughput, and the CPU per request of the gateway and its plugin
#    processes, from /proc). A SigV4 request carries no nonce, so one request signed by
#    botocore is replayed for the whole run (within the 15-minute date window); every
#    replay is verified in full (signature recomputed, key looked up).
# 2. Per-call overhead Skyport adds over calling moto directly: boto3 DescribeInstances
#    for one instance, alternately straight to moto and through Skyport's aws-us-east-1
#    region (each call through Skyport carries a unique filter value, so the read cache
#    never answers it: every call reaches moto), p50 of each and the difference.
#
# 3. With COUNT=instructions, instead of 1 and 2: the gateway runs under callgrind
#    (valgrind), and the same two reads are counted in instructions a request (after a
#    warm-up, N of each on 8 connections): a figure the machine's noise does not move.
#    valgrind's CPU lacks the SHA extensions, so SHA-256 runs in software there; the
#    count is also given without it. With KEEP=DIR, the two profiles (callgrind.out.1, JWT;
#    callgrind.out.2, SigV4) are kept in DIR, for callgrind_annotate.
#
# 4. With COUNT=open-loop, instead of 1 and 2: the two reads at the same offered load (oha
#    at a fixed RATE, default 30,000 req/s, 64 connections; gateway on CPU 0, oha on CPU 1),
#    in alternating rounds; the gateway's CPU per answered request, and the median of the
#    pairs' ratios; the same for its user-space and kernel parts; and the load generator's
#    sleeps per request. Over loopback the kernel's part includes waking the load
#    generator's thread when an answer reaches it, and the slower answers find it asleep
#    more often: the split shows how much of a difference is the gateway's own work.
#
# Usage: bench/ec2.sh [seconds-per-run=5] [rounds=9] [calls=100]
#        COUNT=instructions [KEEP=dir] bench/ec2.sh [requests=2000]
#        COUNT=open-loop [RATE=30000] bench/ec2.sh [seconds-per-run=8] [rounds=7]
set -eu
cd "$(dirname "$0")/.."
DUR=${1:-5}
ROUNDS=${2:-9}
CALLS=${3:-100}

command -v wrk >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null
}
command -v taskset >/dev/null 2>&1 || { echo "taskset (util-linux) is required" >&2; exit 1; }
CLIENT_TIME=
if [ "${COUNT:-time}" = open-loop ] && [ ! -x /usr/bin/time ]; then
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q time >/dev/null
fi
COUNT=${COUNT:-time}
RUN_GATEWAY="taskset -c 0"
if [ "$COUNT" != time ]; then
    command -v oha >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/oha" ] || cargo install --locked oha
    OHA=$(command -v oha || echo "$HOME/.cargo/bin/oha")
fi
if [ "$COUNT" = instructions ]; then
    REQUESTS=${1:-2000}
    command -v valgrind >/dev/null 2>&1 || {
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q valgrind >/dev/null
    }
    # The gateway starts uninstrumented (fast); counting is switched on for the reads.
    RUN_GATEWAY="valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=STATE/callgrind.out"
fi
./tests/install-deps.sh test >/dev/null
PY=.venv/bin/python

cargo build -q --release -p skyport-gateway -p skyport-metering -p skyport-ec2
B=${CARGO_TARGET_DIR:-target}/release
STATE=$(mktemp -d)
trap 'kill $SKY $MOTO_PID 2>/dev/null || true; rm -rf "$STATE"' EXIT

MOTO_PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
.venv/bin/moto_server -H 127.0.0.1 -p "$MOTO_PORT" >"$STATE/moto.log" 2>&1 &
MOTO_PID=$!
printf '[default]\naws_access_key_id = bench\naws_secret_access_key = bench-secret\n' >"$STATE/creds"

# Rate limit out of the way; access log off (warn).
sed -e 's/requests_per_second = 100/requests_per_second = 10000000/' \
    -e 's/^burst = 200/burst = 10000000/' config/skyport.toml >"$STATE/skyport.toml"
cat >>"$STATE/skyport.toml" <<TOML

[[plugins]]
name = "aws-us-east-1"
file = "libskyport_ec2.so"
config = { endpoint = "http://127.0.0.1:$MOTO_PORT", region = "us-east-1", credentials = { file = "$STATE/creds" }, instance_types = { "sp.micro" = "t2.micro" }, images = { "skyport-tiny" = "ami-03cf127a" } }
TOML
for _ in $(seq 100); do $PY -c "import socket; socket.create_connection(('127.0.0.1', $MOTO_PORT))" 2>/dev/null && break; sleep 0.1; done
$B/skyport keys create --tenant demo --state-dir "$STATE" >"$STATE/key.txt" 2>/dev/null
SKYPORT_LOG=warn $(echo "$RUN_GATEWAY" | sed "s|STATE|$STATE|") $B/skyport serve \
    --config "$STATE/skyport.toml" --state-dir "$STATE" \
    --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 2>"$STATE/skyport.log" &
SKY=$!
for _ in $(seq 1200); do [ -s "$STATE/listen.json" ] && break; sleep 0.05; done
ADDR=$(sed 's/.*"api":"\([^"]*\)".*/\1/' "$STATE/listen.json")
export AK=$(awk '/^access_key_id/ {print $2}' "$STATE/key.txt")
export SK=$(awk '/^secret_access_key/ {print $2}' "$STATE/key.txt")
export ENDPOINT="https://$ADDR" CA="$STATE/certs/ca.pem" MOTO="http://127.0.0.1:$MOTO_PORT"

# One instance at moto, through Skyport; then the signed request wrk replays.
STATE=$STATE $PY - <<'PY'
import os, boto3, botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
sky = boto3.client("ec2", region_name="aws-us-east-1", endpoint_url=os.environ["ENDPOINT"],
                   aws_access_key_id=os.environ["AK"], aws_secret_access_key=os.environ["SK"], verify=os.environ["CA"])
ami = sky.describe_images()["Images"][0]["ImageId"]
sky.run_instances(ImageId=ami, InstanceType="sp.micro", MinCount=1, MaxCount=1)
def signed(action, path):
    body = "Action=%s&Version=2016-11-15" % action
    req = AWSRequest(method="POST", url=os.environ["ENDPOINT"] + "/", data=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    botocore.auth.SigV4Auth(Credentials(os.environ["AK"], os.environ["SK"]), "ec2", "aws-us-east-1").add_auth(req)
    headers = ", ".join('["%s"] = "%s"' % (k, v) for k, v in req.headers.items() if k.lower() != "host")
    with open(path, "w") as f:
        f.write('wrk.method = "POST"\nwrk.body = "%s"\nwrk.headers = {%s}\n' % (body, headers))
signed("DescribeInstances", os.environ["STATE"] + "/wrk.lua")
signed("DescribeRegions", os.environ["STATE"] + "/wrk-regions.lua")
PY
TOKEN=$($B/skyport token --tenant demo --ttl 36000 --state-dir "$STATE")

if [ "$COUNT" != time ]; then
    SIGNED_DATE=$(sed -n 's/.*\["X-Amz-Date"\] = "\([^"]*\)".*/\1/p' "$STATE/wrk-regions.lua")
    SIGNED_AUTH=$(sed -n 's/.*\["Authorization"\] = "\([^"]*\)".*/\1/p' "$STATE/wrk-regions.lua")
    # jwt|sigv4 OHA-ARGS... -> oha's report of JWT (GET /v1/regions) or SigV4
    # (DescribeRegions) reads, oha on CPU 1.
    # (With CLIENT_TIME set, oha runs under it: GNU time, for its context switches.)
    jwt() { $CLIENT_TIME taskset -c 1 $OHA --no-tui "$@" --cacert "$CA" -H "Authorization: Bearer $TOKEN" "https://$ADDR/v1/regions"; }
    sigv4() {
        $CLIENT_TIME taskset -c 1 $OHA --no-tui "$@" --cacert "$CA" -m POST \
            -H "Content-Type: application/x-www-form-urlencoded; charset=utf-8" \
            -H "X-Amz-Date: $SIGNED_DATE" -H "Authorization: $SIGNED_AUTH" \
            -d "Action=DescribeRegions&Version=2016-11-15" "https://$ADDR/"
    }
fi

if [ "$COUNT" = open-loop ]; then
    . bench/cpu.sh
    RATE=${RATE:-30000}
    SECS=${1:-8}
    ROUNDS=${2:-7}
    jwt -n 20000 -c 64 >/dev/null
    sigv4 -n 20000 -c 64 >/dev/null
    : >"$STATE/open"
    for r in $(seq "$ROUNDS"); do
        for path in jwt sigv4; do
            before=$(cpu_ticks_split $SKY)
            out=$(CLIENT_TIME="/usr/bin/time -f %w -o $STATE/client" $path -z "${SECS}s" -q "$RATE" -c 64)
            after=$(cpu_ticks_split $SKY)
            # The gateway's CPU per answered request (all, user, system), the answers that
            # were not 200, and the load generator's sleeps (voluntary context switches)
            # per answered request.
            echo "$out" | awk -v a="$after" -v b="$before" -v hz="$HZ" -v p="$path" -v w="$(cat "$STATE/client")" '
                /^ *\[[0-9]+\] [0-9]+ responses/ {gsub(/[][]/, "", $1); n += $2; if ($1 != 200) bad += $2}
                END {split(a, x, " "); split(b, y, " "); u = (x[1] - y[1]) * 1e6 / hz / n; s = (x[2] - y[2]) * 1e6 / hz / n
                     printf "%s %.2f %d %.2f %.2f %.3f\n", p, u + s, bad, u, s, w / n}' >>"$STATE/open"
        done
    done
    col() { awk -v p="$1" -v c="${2:-2}" '$1 == p {print $c}' "$STATE/open"; }
    median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
    # pairs COLUMN -> the median of the rounds' SigV4 / JWT ratios of that column, and their range.
    pairs() {
        col jwt "$1" >"$STATE/open.jwt"
        col sigv4 "$1" | paste "$STATE/open.jwt" - | awk '{print $2 / $1}' | sort -n |
            awk '{a[NR]=$1} END {m = (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2
                printf "%.2fx (median of the pairs, range %.2f-%.2f)", m, a[1], a[NR]}'
    }
    echo "the same read at the same offered load ($RATE req/s, oha -q, 64 connections, ${SECS}s x $ROUNDS alternating rounds):"
    echo "  JWT   GET /v1/regions          $(col jwt | median) us CPU/req (rounds: $(col jwt | tr '\n' ' '))"
    echo "  SigV4 POST / DescribeRegions   $(col sigv4 | median) us CPU/req (rounds: $(col sigv4 | tr '\n' ' '))"
    echo "  answers other than 200: $(awk '{n += $3} END {print n + 0}' "$STATE/open")"
    echo "  SigV4 / JWT CPU per request $(pairs 2); target: at most 1.15x"
    echo "  of which user space: JWT $(col jwt 4 | median) us, SigV4 $(col sigv4 4 | median) us: $(pairs 4)"
    echo "  and the kernel: JWT $(col jwt 5 | median) us, SigV4 $(col sigv4 5 | median) us: $(pairs 5)"
    echo "  the load generator's sleeps a request (oha's voluntary context switches): JWT $(col jwt 6 | median), SigV4 $(col sigv4 6 | median)"
    exit 0
fi

if [ "$COUNT" = instructions ]; then
    callgrind_control -i on $SKY >/dev/null 2>&1
    jwt -n 500 -c 8 >/dev/null
    sigv4 -n 500 -c 8 >/dev/null
    callgrind_control -z $SKY >/dev/null 2>&1
    jwt -n "$REQUESTS" -c 8 >/dev/null
    callgrind_control -d jwt $SKY >/dev/null 2>&1
    sigv4 -n "$REQUESTS" -c 8 >/dev/null
    callgrind_control -d sigv4 $SKY >/dev/null 2>&1
    callgrind_control -i off $SKY >/dev/null 2>&1
    # instructions FILE [exclude-regex] -> instructions a request in one dump.
    instructions() {
        callgrind_annotate --auto=no --inclusive=no --threshold=100 "$1" 2>/dev/null | awk -v n="$REQUESTS" -v x="${2:-^$}" '
            /PROGRAM TOTALS/ {gsub(",", "", $1); total = $1}
            / \(.*%\) / && $0 ~ x {c = $1; gsub(",", "", c); excluded += c}
            END {printf "%.0f", (total - excluded) / n}'
    }
    J=$(instructions "$STATE/callgrind.out.1")
    S=$(instructions "$STATE/callgrind.out.2")
    SX=$(instructions "$STATE/callgrind.out.2" "sha256::compress256")
    echo "instructions a request, gateway process, callgrind ($REQUESTS of each after 500 of each; TLS handshakes of 8 connections included):"
    echo "  JWT   GET /v1/regions          $J"
    echo "  SigV4 POST / DescribeRegions   $S ($SX without software SHA-256's block function)"
    awk -v j="$J" -v s="$S" -v x="$SX" 'BEGIN {printf "  SigV4 / JWT: %.2fx (%.2fx without software SHA-256)\n", s / j, x / j}'
    if [ -n "${KEEP:-}" ]; then
        mkdir -p "$KEEP" && cp "$STATE"/callgrind.out.1 "$STATE"/callgrind.out.2 "$KEEP"/
        echo "  profiles kept: $KEEP/callgrind.out.1 (JWT), $KEEP/callgrind.out.2 (SigV4)"
    fi
    exit 0
fi

. bench/cpu.sh
# run ARGS... -> "req/s cpu_us_per_request" of one wrk run against Skyport.
run() {
    before=$(cpu_ticks $SKY)
    out=$(taskset -c 1 wrk -t1 -c64 -d"${DUR}s" "$@")
    after=$(cpu_ticks $SKY)
    echo "$out" | awk -v a="$after" -v b="$before" -v hz="$HZ" '
        /requests in/ {n = $1} /Requests\/sec/ {r = $2}
        END {printf "%d %.1f\n", r, (a - b) * 1e6 / hz / n}'
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
# Warm-up, not measured: the metering plugin's ledger grows its page cache (64 MiB) over
# the first few hundred thousand events, and that growth would fall on whichever path
# ran first.
run -H "Authorization: Bearer $TOKEN" "https://$ADDR/v1/regions" >/dev/null
run -s "$STATE/wrk.lua" "https://$ADDR/" >/dev/null
run -s "$STATE/wrk-regions.lua" "https://$ADDR/" >/dev/null
# Rounds alternate the two paths; each round's pair gives one ratio, and the ratios'
# median is the figure (the machine's speed drifts between rounds, a pair's much less).
: >"$STATE/pairs"
for r in $(seq "$ROUNDS"); do
    jwt=$(run -H "Authorization: Bearer $TOKEN" "https://$ADDR/v1/regions")
    sig=$(run -s "$STATE/wrk.lua" "https://$ADDR/")
    reg=$(run -s "$STATE/wrk-regions.lua" "https://$ADDR/")
    echo "$jwt $sig $reg" >>"$STATE/pairs"
done
col() { awk -v c="$1" '{print $c}' "$STATE/pairs"; }
echo "cached reads, closed loop (wrk -c64, ${DUR}s x $ROUNDS alternating rounds, medians):"
echo "  JWT   GET /v1/regions                $(col 1 | median) req/s, $(col 2 | median) us CPU/req   (rounds: $(col 1 | tr '\n' ' '))"
echo "  SigV4 POST / DescribeInstances       $(col 3 | median) req/s, $(col 4 | median) us CPU/req   (rounds: $(col 3 | tr '\n' ' '))"
echo "  SigV4 POST / DescribeRegions         $(col 5 | median) req/s, $(col 6 | median) us CPU/req   (rounds: $(col 5 | tr '\n' ' '))"
R=$(awk '{print $1 / $3}' "$STATE/pairs" | median)
C=$(awk '{print $4 / $2}' "$STATE/pairs" | median)
awk -v r="$R" -v c="$C" 'BEGIN {printf "  JWT/SigV4 throughput ratio %.2fx (target: at most 1.3x); SigV4/JWT CPU per request %.2fx (medians over the pairs of rounds)\n", r, c}'
RR=$(awk '{print $6 / $2}' "$STATE/pairs" | median)
awk -v c="$RR" 'BEGIN {printf "  the same read, the tenant'"'"'s regions: SigV4 DescribeRegions / JWT GET /v1/regions CPU per request %.2fx (target: at most 1.15x)\n", c}'

CALLS=$CALLS $PY - <<'PY'
import os, statistics, time, boto3
sky = boto3.client("ec2", region_name="aws-us-east-1", endpoint_url=os.environ["ENDPOINT"],
                   aws_access_key_id=os.environ["AK"], aws_secret_access_key=os.environ["SK"], verify=os.environ["CA"])
moto = boto3.client("ec2", region_name="us-east-1", endpoint_url=os.environ["MOTO"],
                    aws_access_key_id="bench", aws_secret_access_key="bench-secret")
direct, through = [], []
for i in range(int(os.environ["CALLS"])):
    t = time.perf_counter(); moto.describe_instances(); direct.append(time.perf_counter() - t)
    t = time.perf_counter()
    sky.describe_instances(Filters=[{"Name": "instance-state-code", "Values": ["*", str(i)]}])
    through.append(time.perf_counter() - t)
d, s = statistics.median(direct) * 1e3, statistics.median(through) * 1e3
print(f"per-call overhead over moto ({len(direct)} alternating boto3 DescribeInstances calls each):")
print(f"  moto direct p50 {d:.2f} ms, through Skyport p50 {s:.2f} ms: +{s - d:.2f} ms ({s / d:.2f}x)")
PY
