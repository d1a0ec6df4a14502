#!/bin/bash
# The RDMA verbs transport against a real kernel provider: soft-RoCE
# (rdma_rxe) in a qemu VM booting a Debian kernel, since the host kernel
# has no RDMA. Inside the VM (tools/rdma_vm/init.sh): test_rdma (all its
# cases), the conformance suite in split mode (parent and child processes)
# and the peer-death cases, and `strait bench transport --transport rdma`
# at small sizes (the fork-mode conformance suite on request, see below).
#
# The verdict is the VM's result line on its serial console; a missing line
# (the VM crashed, hung and was killed) fails. Under emulation (TCG)
# throughput is low: the bench numbers are printed as emulation numbers,
# never checked against targets.
#
# Kernel and initramfs are cached in $ST_BINARY_DIR/rdma-vm (the initramfs
# is rebuilt when a binary or script is newer). Skips (77) without qemu,
# busybox-static, the rxe provider, a kernel package from apt, or a build
# with verbs.
#   bash test_rdma_vm.sh path/to/strait
# Environment: ST_RDMA_VM_TIMEOUT (qemu limit, s, default 300),
# ST_RDMA_VM_ACCEL (kvm|tcg), ST_RDMA_VM_STEPS (comma list of test_rdma,
# conformance, killed-sender, stalled-sender, dead-receiver,
# conformance-fork, bench; default all but conformance-fork),
# ST_RDMA_VM_MAX_SIZE (largest conformance message, bytes; default 2 MiB),
# ST_RDMA_VM_BENCH_SIZES (the bench's --sizes; default 64,4K,64K).
set -u
strait=${1:?usage: test_rdma_vm.sh path/to/strait}
src=${ST_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
bin=${ST_BINARY_DIR:-$(dirname "$strait")}
vmtools=$src/tools/rdma_vm
cache=$bin/rdma-vm
t_rdma=$bin/tests/dataplane_test_rdma
t_conf=$bin/tests/dataplane_test_conformance

skip() { echo "SKIP: $*"; exit 77; }
command -v qemu-system-x86_64 >/dev/null || skip "no qemu-system-x86_64 (apt-get install qemu-system-x86)"
for b in "$strait" "$t_rdma" "$t_conf"; do
    [ -x "$b" ] || skip "$b is not built"
done
ldd "$t_rdma" 2>/dev/null | grep -q libibverbs || skip "built without RDMA verbs (no libibverbs in $t_rdma)"
mkdir -p "$cache" || exit 1

t0=$(date +%s)
kdir=$("$vmtools/fetch_kernel.sh" "$cache" 2>"$cache/fetch.err")
rc=$?
[ $rc = 3 ] && skip "no kernel package: $(tail -1 "$cache/fetch.err")"
[ $rc = 0 ] || { cat "$cache/fetch.err"; echo "FAIL: fetching the kernel"; exit 1; }

initrd=$cache/initrd.gz
stale=0
[ -s "$initrd" ] || stale=1
for f in "$strait" "$t_rdma" "$t_conf" "$vmtools"/*.sh "$kdir/version"; do
    [ "$f" -nt "$initrd" ] && stale=1
done
if [ $stale = 1 ]; then
    "$vmtools/mkinitrd.sh" "$kdir" "$initrd" "$t_rdma" "$t_conf" "$strait" 2>"$cache/mkinitrd.err"
    rc=$?
    [ $rc = 3 ] && skip "$(tail -1 "$cache/mkinitrd.err")"
    [ $rc = 0 ] || { cat "$cache/mkinitrd.err"; echo "FAIL: building the initramfs"; exit 1; }
fi
t1=$(date +%s)

log=$cache/serial.log
steps=${ST_RDMA_VM_STEPS:-test_rdma,conformance,killed-sender,stalled-sender,dead-receiver,bench}
limit=${ST_RDMA_VM_TIMEOUT:-300}
# the guest's own budget leaves the boot and the power-off inside qemu's limit
args="strait.steps=$steps strait.budget=$((limit > 80 ? limit - 40 : limit / 2))"
[ -n "${ST_RDMA_VM_MAX_SIZE:-}" ] && args="$args strait.max_size=$ST_RDMA_VM_MAX_SIZE"
[ -n "${ST_RDMA_VM_BENCH_SIZES:-}" ] && args="$args strait.bench_sizes=$ST_RDMA_VM_BENCH_SIZES"
ST_RDMA_VM_TIMEOUT=$limit "$vmtools/run_vm.sh" "$kdir/vmlinuz" "$initrd" "$log" "$args"
qrc=$?
t2=$(date +%s)
[ $qrc = 3 ] && skip "qemu is not installed"

# the console has CR LF line ends and may interleave kernel messages
clean=$(tr -d '\r' <"$log")
result=$(printf '%s\n' "$clean" | grep -a '^STRAIT_RDMA_VM_RESULT ' | tail -1)
echo "$clean" | grep -a -v '^STRAIT_RDMA_VM_RESULT ' | grep -a -v '^\[ *[0-9.]*\] ' | tail -n 400
echo "kernel $(cut -d' ' -f1 "$kdir/version"); prepare $((t1 - t0)) s, VM $((t2 - t1)) s (qemu exit $qrc)"
bench=$(printf '%s\n' "$clean" | grep -a '^{"bench":"transport"' | tail -1)
[ -n "$bench" ] && echo "bench (soft-RoCE under emulation, not a hardware number): $bench"
if [ -z "$result" ]; then
    [ $qrc = 124 ] && echo "FAIL: the VM ran past $limit s and was killed; no result line"
    echo "FAIL: no result line on the VM console (serial log: $log)"
    exit 1
fi
echo "$result"
fail=0
case "$result" in *" status=PASS "*) ;; *) fail=1 ;; esac
# every step asked for must have run and be ok: a VM that skipped one is no pass
for s in setup ${steps//,/ }; do
    case "$result" in *" $s=ok "*) ;; *) echo "FAIL: step $s is not ok"; fail=1 ;; esac
done
[ $fail = 0 ] || exit 1
echo "PASS: rdma over soft-RoCE in a VM ($steps)"
