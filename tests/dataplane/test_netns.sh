#!/bin/bash
# The conformance cases between two processes, for tcp and shm: first on
# loopback (one namespace), then with the two processes in two network
# namespaces joined by a veth pair (10.199.N.1 <-> 10.199.N.2, private test
# addresses that exist only inside the namespaces made here).
#  - tcp crosses the veth pair.
#  - shm needs one host, which namespaces share: its rendezvous is a unix
#    socket at a file path (abstract "@names" are per network namespace),
#    which both namespaces see, and the memfd passed over it is the same
#    memory. So shm across namespaces is two containers on one host.
# After the split-mode table, the peer-death cases (killed, stalled, dead
# peer: an error in bounded time, no hang) run across the namespaces too,
# one child process each (--case NAME --peer-pid-file F).
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
sockdir=$(mktemp -d /tmp/strait-netns.XXXXXX)
chmod 755 "$sockdir"
trap 'rm -rf "$sockdir"' EXIT

run_pair() { # run_pair "parent prefix" "child prefix" transport addr
    local pre_p=$1 pre_c=$2 tr=$3 addr=$4
    $pre_p timeout 120 "$conf" --role parent --transport "$tr" --addr "$addr" &
    local ppid=$!
    $pre_c timeout 120 "$conf" --role child --transport "$tr" --addr "$addr"
    local crc=$?
    wait $ppid
    local prc=$?
    echo "$tr: parent exit $prc, child exit $crc ($addr)"
    [ $prc -eq 0 ] && [ $crc -eq 0 ]
}

# the peer-death cases, one pair of processes each; the child ends killed
run_deaths() { # run_deaths "parent prefix" "child prefix" transport addr
    local pre_p=$1 pre_c=$2 tr=$3 addr=$4 c pidf prc crc
    for c in killed-sender stalled-sender dead-receiver; do
        pidf="$sockdir/peer-$tr-$c.pid"
        [ "$tr" = shm ] && rm -f "$addr"
        $pre_p timeout -s KILL 60 "$conf" --role parent --transport "$tr" --addr "$addr" --case "$c" \
            --peer-pid-file "$pidf" &
        local ppid=$!
        $pre_c timeout -s KILL 60 "$conf" --role child --transport "$tr" --addr "$addr" --case "$c" \
            --peer-pid-file "$pidf"
        crc=$?
        wait $ppid
        prc=$?
        echo "$tr/$c: parent exit $prc, child exit $crc (137: killed, as the case requires)"
        [ $prc -eq 0 ] && [ $crc -eq 137 ] || return 1
    done
}

port=$((20000 + $$ % 20000))
run_pair "" "" tcp "127.0.0.1:$port" || { echo "FAIL: tcp on loopback"; exit 1; }
run_pair "" "" shm "$sockdir/loop.sock" || { echo "FAIL: shm on one namespace"; exit 1; }

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
    rm -rf "$sockdir"
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
A="ip netns exec $nsa" B="ip netns exec $nsb"
run_pair "$A" "$B" tcp "10.199.$n.1:7411" || { echo "FAIL: tcp across namespaces"; exit 1; }
run_pair "$A" "$B" shm "$sockdir/ns.sock" || { echo "FAIL: shm across namespaces"; exit 1; }
run_deaths "$A" "$B" tcp "10.199.$n.1:7413" || { echo "FAIL: tcp peer death across namespaces"; exit 1; }
run_deaths "$A" "$B" shm "$sockdir/death.sock" || { echo "FAIL: shm peer death across namespaces"; exit 1; }

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
echo "PASS: tcp and shm on loopback and between two namespaces (tcp over a veth pair); peer death across namespaces"
