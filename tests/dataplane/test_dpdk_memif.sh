#!/bin/bash
# The data-plane conformance cases over the dpdk transport between two
# processes (test_conformance --role parent|child), on net_memif: the
# parent's port is the memif server, the child's the client, on one
# abstract unix socket. Run twice: on a clean channel, and with the
# transmit fault hook dropping 1% of the frames and reordering and
# duplicating 1% (ST_DPDK_DROP / _REORDER / _DUP) on both ends.
# Then the peer-death cases, one process pair each (--case NAME): the
# child writes its pid to a file before it connects and the parent, once
# it has received from it, kills it (killed-sender) or stops it
# (stalled-sender), or the child kills itself mid-stream (dead-receiver);
# the parent must see ST_ECONN within the liveness bound, and the child
# must end by SIGKILL (exit 137), not by returning.
# Skips (77) when the build has no DPDK or the EAL cannot start here.
#   bash test_dpdk_memif.sh path/to/strait
set -u
conf="${ST_BINARY_DIR:-$(dirname "${1:-.}")}/tests/dataplane_test_conformance"
if [ ! -x "$conf" ]; then
    echo "SKIP: $conf is not built"
    exit 77
fi
if ! grep -qa st_dpdk_ops "$conf"; then
    echo "SKIP: built without DPDK"
    exit 77
fi

run_pair() { # run_pair label addr
    local label=$1 addr=$2 log
    log=$(mktemp)
    timeout 180 "$conf" --role parent --transport dpdk --addr "$addr" >"$log" 2>&1 &
    local ppid=$!
    timeout 180 "$conf" --role child --transport dpdk --addr "$addr" >>"$log" 2>&1
    local crc=$?
    wait $ppid
    local prc=$?
    if grep -q "EAL did not start" "$log"; then
        grep -m1 "EAL did not start" "$log"
        rm -f "$log"
        echo "SKIP: the DPDK EAL does not start here"
        exit 77
    fi
    grep -v "mp action callback" "$log"
    rm -f "$log"
    echo "$label: parent exit $prc, child exit $crc"
    [ $prc -eq 0 ] && [ $crc -eq 0 ]
}

death_pair() { # death_pair case addr
    local name=$1 addr=$2 log pidf
    log=$(mktemp)
    pidf=$(mktemp -u)
    timeout -s KILL 60 "$conf" --role parent --transport dpdk --addr "$addr" --case "$name" \
        --peer-pid-file "$pidf" >"$log" 2>&1 &
    local ppid=$!
    timeout -s KILL 60 "$conf" --role child --transport dpdk --addr "$addr" --case "$name" \
        --peer-pid-file "$pidf" >>"$log" 2>&1
    local crc=$?
    wait $ppid
    local prc=$?
    grep -v "mp action callback" "$log"
    rm -f "$log" "$pidf" "$pidf.tmp"
    echo "$name: parent exit $prc, child exit $crc (137: killed, as the case requires)"
    [ $prc -eq 0 ] && [ $crc -eq 137 ]
}

run_pair "memif" "net_memif,socket=/strait-conf-$$,socket-abstract=yes" || { echo "FAIL: memif"; exit 1; }
ST_DPDK_DROP=0.01 ST_DPDK_REORDER=0.01 ST_DPDK_DUP=0.01 \
    run_pair "memif with 1% loss" "net_memif,socket=/strait-conf-loss-$$,socket-abstract=yes" ||
    { echo "FAIL: memif with loss"; exit 1; }
for c in killed-sender stalled-sender dead-receiver; do
    death_pair "$c" "net_memif,socket=/strait-conf-$c-$$,socket-abstract=yes" || { echo "FAIL: memif $c"; exit 1; }
done
echo "PASS: conformance over dpdk/memif, clean and with loss; peer death"
