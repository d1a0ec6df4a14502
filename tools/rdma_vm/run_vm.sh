#!/bin/bash
# Boot the RDMA test VM once and keep its serial console in a file.
#
#   tools/rdma_vm/run_vm.sh VMLINUZ INITRD SERIAL_LOG [EXTRA_KERNEL_ARGS]
#
# Exit: qemu's status (0 after the guest powers off, whatever its tests
# said: the verdict is the result line in SERIAL_LOG), 124 when the VM ran
# past ST_RDMA_VM_TIMEOUT seconds (default 300) and was killed, 3 when no
# qemu-system-x86_64 is installed.
#
# Acceleration: KVM where /dev/kvm can be opened and a KVM guest boots the
# kernel, else TCG. Some hosts (nested virtualization) open /dev/kvm and run
# the firmware but hang before the kernel's first line; so a KVM guest that
# prints nothing within ST_RDMA_VM_KVM_GRACE seconds (default 15) is killed,
# the run starts again under TCG, and the verdict is remembered beside
# SERIAL_LOG (kvm-broken, per host kernel) so later runs go straight to TCG.
# ST_RDMA_VM_ACCEL=kvm|tcg forces one.
set -u

kernel=${1:?usage: run_vm.sh VMLINUZ INITRD SERIAL_LOG [EXTRA_KERNEL_ARGS]}
initrd=${2:?usage: run_vm.sh VMLINUZ INITRD SERIAL_LOG [EXTRA_KERNEL_ARGS]}
log=${3:?usage: run_vm.sh VMLINUZ INITRD SERIAL_LOG [EXTRA_KERNEL_ARGS]}
extra=${4:-}
limit=${ST_RDMA_VM_TIMEOUT:-300}
grace=${ST_RDMA_VM_KVM_GRACE:-15}
command -v qemu-system-x86_64 >/dev/null || { echo "no qemu-system-x86_64 (apt-get install qemu-system-x86)" >&2; exit 3; }

broken=$(dirname "$log")/kvm-broken
host_id="$(uname -r) $(qemu-system-x86_64 --version | head -1)"
accel=${ST_RDMA_VM_ACCEL:-}
if [ -z "$accel" ]; then
    accel=tcg
    if [ -r /dev/kvm ] && [ -w /dev/kvm ] && [ "$(cat "$broken" 2>/dev/null)" != "$host_id" ]; then
        accel=kvm
    fi
fi

# qemu's own pid (never a wrapper's: killing a `timeout` would orphan it),
# killed on every way out of this script
qpid=""
stop_qemu() {
    [ -n "$qpid" ] || return 0
    kill -KILL "$qpid" 2>/dev/null
    wait "$qpid" 2>/dev/null
    qpid=""
}
trap stop_qemu EXIT
trap 'exit 143' INT TERM HUP

# boot ACCEL CPU: start qemu in the background; sets $qpid
boot() {
    : >"$log"
    # panic=-1 and -no-reboot: a guest that panics (or whose init dies) ends qemu
    qemu-system-x86_64 -accel "$1" -cpu "$2" -m 2048 -smp 2 \
        -nodefaults -no-reboot -display none -monitor none -nic none -serial "file:$log" \
        -kernel "$kernel" -initrd "$initrd" \
        -append "console=ttyS0 panic=-1 loglevel=3 $extra" &
    qpid=$!
    started=$(date +%s)
}

t0=$(date +%s)
if [ "$accel" = kvm ]; then
    # -cpu host minus arch-capabilities: some nested hosts refuse that MSR
    boot kvm host,-arch-capabilities
    while kill -0 $qpid 2>/dev/null && [ ! -s "$log" ] && [ $(($(date +%s) - t0)) -lt "$grace" ]; do
        sleep 1
    done
    if [ ! -s "$log" ] && [ -z "${ST_RDMA_VM_ACCEL:-}" ]; then
        stop_qemu
        echo "run_vm: a KVM guest printed nothing in ${grace} s; using TCG (remembered in $broken)" >&2
        echo "$host_id" >"$broken"
        accel=tcg
    fi
fi
if [ "$accel" = tcg ]; then
    # -cpu max: the binaries use more than qemu64's instruction set
    boot tcg max
fi
echo "run_vm: accel $accel" >&2
# the outer limit, counted from this boot; polled once a second
while kill -0 "$qpid" 2>/dev/null && [ $(($(date +%s) - started)) -lt "$limit" ]; do
    sleep 1
done
if kill -0 "$qpid" 2>/dev/null; then
    stop_qemu
    exit 124
fi
wait "$qpid"
rc=$?
qpid=""
exit $rc
