#!/bin/bash
# The TCP conformance cases between two processes: first on loopback, then
# in two network namespaces joined by a veth pair (10.199.N.1 <-> 10.199.N.2,
# private test addresses that exist only inside the namespaces made here).
# Needs root and iproute2 for the namespace part; skips (77) without them.
# Everything is bounded by `timeout`; namespaces are removed on any exit.
# When `strait bench transport` is linked in, its two ends also run across
# the namespaces (--listen / --connect).
#   bash test_netns.sh path/to/strait
set -u
conf="${ST_BINARY_DIR:-$(dirname "${1:-.}")}/tests/dataplane_test_conformance"
if [ ! -x "$conf" ]; then
    echo "SKIP: $conf is not built"
    exit 77
fi

run_pair() { # run_pair "parent prefix" "child prefix" addr
    local pre_p=$1 pre_c=$2 addr=$3
    $pre_p timeout 120 "$conf" --role parent --transport tcp --addr "$addr" &
    local ppid=$!
    $pre_c timeout 120 "$conf" --role child --transport tcp --addr "$addr"
    local crc=$?
    wait $ppid
    local prc=$?
    echo "parent exit $prc, child exit $crc ($addr)"
    [ $prc -eq 0 ] && [ $crc -eq 0 ]
}

port=$((20000 + $$ % 20000))
run_pair "" "" "127.0.0.1:$port" || { echo "FAIL: loopback"; exit 1; }

if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then
    echo "SKIP: network namespaces need root and iproute2 (loopback part passed)"
    exit 77
fi
n=$(($$ % 250 + 1))
nsa="st-dp-a-$$"
nsb="st-dp-b-$$"
va="stva$$"
vb="stvb$$"
cleanup() {
    ip netns del "$nsa" 2>/dev/null
    ip netns del "$nsb" 2>/dev/null # the veth pair goes with its namespaces
    ip link del "$va" 2>/dev/null
    true
}
trap cleanup EXIT INT TERM
if ! ip netns add "$nsa" 2>/dev/null || ! ip netns add "$nsb" 2>/dev/null ||
    ! ip link add "$va" type veth peer name "$vb" 2>/dev/null; then
    echo "SKIP: cannot create network namespaces or a veth pair here (loopback part passed)"
    exit 77
fi
set -e
ip link set "$va" netns "$nsa"
ip link set "$vb" netns "$nsb"
ip -n "$nsa" addr add "10.199.$n.1/24" dev "$va"
ip -n "$nsb" addr add "10.199.$n.2/24" dev "$vb"
ip -n "$nsa" link set lo up
ip -n "$nsb" link set lo up
ip -n "$nsa" link set "$va" up
ip -n "$nsb" link set "$vb" up
set +e
run_pair "ip netns exec $nsa" "ip netns exec $nsb" "10.199.$n.1:7411" || { echo "FAIL: across namespaces"; exit 1; }

strait=${1:-}
if [ -x "$strait" ] && ! "$strait" bench transport --help 2>&1 | grep -q "not available"; then
    out=$(mktemp)
    ip netns exec "$nsa" timeout 60 "$strait" bench transport --transport tcp --listen "10.199.$n.1:7412" \
        --sizes 64,64K --count 200 --json >"$out" 2>&1 &
    spid=$!
    ip netns exec "$nsb" timeout 60 "$strait" bench transport --transport tcp --connect "10.199.$n.1:7412" \
        --sizes 64,64K --count 200
    crc=$?
    wait $spid
    src=$?
    if [ $src -ne 0 ] || [ $crc -ne 0 ] || ! grep -q '^{"bench":"transport"' "$out"; then
        echo "FAIL: bench transport across namespaces (server $src, client $crc)"
        cat "$out"
        rm -f "$out"
        exit 1
    fi
    cat "$out"
    rm -f "$out"
else
    echo "note: strait bench transport not linked in; skipped the benchmark across namespaces"
fi
echo "PASS: loopback and veth between namespaces"
