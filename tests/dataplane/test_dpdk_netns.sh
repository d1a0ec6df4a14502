#!/bin/bash
# The conformance cases over the dpdk transport on net_af_packet, across a
# veth pair whose ends sit in two network namespaces made here (no IP
# addresses on the veths: the frames are the transport's own
# Ethernet/IPv4/UDP). Needs root, iproute2 and a DPDK build; skips (77)
# otherwise. Bounded by `timeout`; the namespaces go on any exit. Then the
# peer-death cases (killed-sender, stalled-sender, dead-receiver), one
# process pair each, as in test_dpdk_memif.sh: the child must end killed
# (exit 137) and the parent see ST_ECONN within the liveness bound.
#   bash test_dpdk_netns.sh path/to/strait
set -u
conf="${ST_BINARY_DIR:-$(dirname "${1:-.}")}/tests/dataplane_test_conformance"
[ -x "$conf" ] || { echo "SKIP: $conf is not built"; exit 77; }
grep -qa st_dpdk_ops "$conf" || { echo "SKIP: built without DPDK"; exit 77; }
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then
    echo "SKIP: network namespaces need root and iproute2"
    exit 77
fi
nsa="st-dpdk-a-$$" nsb="st-dpdk-b-$$" va="stda$$" vb="stdb$$"
cleanup() {
    ip netns del "$nsa" 2>/dev/null
    ip netns del "$nsb" 2>/dev/null
    ip link del "$va" 2>/dev/null
    true
}
trap cleanup EXIT INT TERM
if ! ip netns add "$nsa" 2>/dev/null || ! ip netns add "$nsb" 2>/dev/null ||
    ! ip link add "$va" type veth peer name "$vb" 2>/dev/null; then
    echo "SKIP: cannot create network namespaces or a veth pair here"
    exit 77
fi
set -e
ip link set "$va" netns "$nsa"
ip link set "$vb" netns "$nsb"
ip -n "$nsa" link set "$va" up
ip -n "$nsb" link set "$vb" up
set +e
log=$(mktemp)
ip netns exec "$nsa" timeout 240 "$conf" --role parent --transport dpdk --addr "net_af_packet,iface=$va" >"$log" 2>&1 &
ppid=$!
ip netns exec "$nsb" timeout 240 "$conf" --role child --transport dpdk --addr "net_af_packet,iface=$vb" >>"$log" 2>&1
crc=$?
wait $ppid
prc=$?
if grep -q "EAL did not start" "$log"; then
    grep -m1 "EAL did not start" "$log"
    rm -f "$log"
    echo "SKIP: the DPDK EAL does not start here"
    exit 77
fi
grep -v "mp action callback" "$log"
rm -f "$log"
echo "af_packet across namespaces: parent exit $prc, child exit $crc"
[ $prc -eq 0 ] && [ $crc -eq 0 ] || { echo "FAIL: dpdk over af_packet on a veth pair"; exit 1; }
for c in killed-sender stalled-sender dead-receiver; do
    pidf=$(mktemp -u)
    ip netns exec "$nsa" timeout -s KILL 60 "$conf" --role parent --transport dpdk --addr "net_af_packet,iface=$va" \
        --case "$c" --peer-pid-file "$pidf" >"$log" 2>&1 &
    ppid=$!
    ip netns exec "$nsb" timeout -s KILL 60 "$conf" --role child --transport dpdk --addr "net_af_packet,iface=$vb" \
        --case "$c" --peer-pid-file "$pidf" >>"$log" 2>&1
    crc=$?
    wait $ppid
    prc=$?
    grep -v "mp action callback" "$log"
    rm -f "$log" "$pidf" "$pidf.tmp"
    echo "$c: parent exit $prc, child exit $crc (137: killed, as the case requires)"
    [ $prc -eq 0 ] && [ $crc -eq 137 ] || { echo "FAIL: dpdk over af_packet: $c"; exit 1; }
done
echo "PASS: conformance over dpdk/af_packet across two namespaces; peer death"
