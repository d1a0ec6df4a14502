#!/bin/bash
# `strait bench transport`: options are validated (bad ones name themselves
# and exit 2), and a tiny run of each transport produces a table and a JSON
# line with sane numbers. Skips (77) while the verb is not linked in.
#   bash test_bench_transport.sh path/to/strait
set -u
strait=$1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
timeout 20 "$strait" bench transport --help >"$out" 2>&1
if grep -q "not available in this build" "$out"; then
    echo "SKIP: strait bench transport is not linked in this build"
    exit 77
fi
fail=0
expect_bad() { # expect_bad "what must be named" args...
    local name=$1
    shift
    timeout 20 "$strait" bench transport "$@" >"$out" 2>&1
    local rc=$?
    if [ $rc -ne 2 ] || ! grep -q -- "$name" "$out"; then
        echo "FAIL: '$*' gave exit $rc, expected 2 naming $name:"
        cat "$out"
        fail=1
    fi
}
expect_bad "--bogus" --bogus
expect_bad "--transport" --transport carrier-pigeon
expect_bad "--size" --size 0
expect_bad "--size" --size 65M
expect_bad "--size" --size 12Q
expect_bad "--sizes" --sizes 64,,x
expect_bad "--count" --count -3
expect_bad "--count" --count
expect_bad "--mode" --mode turbo
expect_bad "--dataplane-cores" --dataplane-cores 1,a
expect_bad "--dataplane-cores" --dataplane-cores 99999

for t in shm tcp tcp-baseline; do
    timeout 60 "$strait" bench transport --transport "$t" --sizes 64,8K --count 200 --json >"$out" 2>&1
    rc=$?
    json=$(grep '^{"bench":"transport"' "$out")
    if [ $rc -ne 0 ] || [ -z "$json" ]; then
        echo "FAIL: $t run exit $rc"
        cat "$out"
        fail=1
        continue
    fi
    # every latency and throughput figure must be a positive number
    if ! echo "$json" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["memcpy_gbps"] > 0 and len(d["results"]) == 2, d
for r in d["results"]:
    assert 0 < r["lat_p50_us"] <= r["lat_p99_us"] <= r["lat_p999_us"], r
    assert r["gbps"] > 0 and r["msgs_per_s"] > 0, r
assert [r["size"] for r in d["results"]] == [64, 8192]
'; then
        echo "FAIL: $t JSON: $json"
        fail=1
    fi
done
# poller mode reports the polling core's counters: per size the listening
# end sends its pings (warm-up + 200) and 200 stream messages, and receives
# the pongs; and the core's idle passes
timeout 60 "$strait" bench transport --transport shm --mode poller --sizes 64,8K --count 200 --json >"$out" 2>&1
rc=$?
json=$(grep '^{"bench":"transport"' "$out")
if [ $rc -ne 0 ] || ! echo "$json" | python3 -c '
import json, sys
d = json.load(sys.stdin)
p = d["poller"]
assert p["msgs_tx"] >= 2 * 400 and p["bytes_tx"] >= 400 * 64 + 400 * 8192, p
assert p["msgs_rx"] >= 2 * 200 and p["bytes_rx"] >= 200 * 64 + 200 * 8192, p
assert p["spins"] + p["yields"] + p["sleeps"] > 0, p
'; then
    echo "FAIL: poller counters (exit $rc): $json"
    cat "$out"
    fail=1
fi
[ $fail -eq 0 ] && echo "PASS"
exit $fail
