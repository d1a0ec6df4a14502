#!/bin/sh
# /init of the RDMA test VM (busybox sh, PID 1). Loads soft-RoCE, puts rxe0
# on dummy0, runs the RDMA tests, prints one result line on the console and
# powers off. The host (tests/dataplane/test_rdma_vm.sh) reads the line:
#
#   STRAIT_RDMA_VM_RESULT status=PASS|FAIL <step>=ok|rcN ... seconds=S
#
# where every step that ran appears with "ok" or its exit status(es); a
# step is ok only with the exit status its contract requires. The line is
# printed once, last; no line at all (a crash, a hang killed by the host)
# is a failure there.
#
# Kernel command line options (optional):
#   strait.steps=a,b,...   run only these steps (default: all, in order)
#   strait.bench_sizes=... sizes for `strait bench transport` (default 64,4K,64K,1M)
#   strait.max_size=B      largest conformance echo size (default 8 MiB of the
#                          suite's 64 MiB: emulated soft-RoCE moves tens of MB/s)
export PATH=/bin:/t
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp

steps="test_rdma conformance killed-sender stalled-sender dead-receiver conformance-fork bench"
bench_sizes=64,4K,64K,1M
max_size=8388608
for a in $(cat /proc/cmdline); do
    case "$a" in
        strait.max_size=*) max_size=${a#strait.max_size=} ;;
        strait.steps=*) steps=$(echo "${a#strait.steps=}" | tr ',' ' ') ;;
        strait.bench_sizes=*) bench_sizes=${a#strait.bench_sizes=} ;;
    esac
done

results=""
status=PASS
record() { # record step verdict
    results="$results $1=$2"
    [ "$2" = ok ] || status=FAIL
    echo "== $1: $2 ($(cut -d' ' -f1 /proc/uptime) s since boot)"
}
finish() {
    echo "STRAIT_RDMA_VM_RESULT status=$status$results seconds=$(cut -d' ' -f1 /proc/uptime)"
    sync
    poweroff -f
    sleep 10
}

# ---- soft-RoCE on a dummy interface (rdma_cm and rxe do not work on lo)
for m in /mods/*.ko; do
    insmod "$m" || { echo "insmod $m failed"; record setup "insmod-${m##*/}"; finish; }
done
ip link set lo up
ip link show dummy0 >/dev/null 2>&1 || ip link add dummy0 type dummy
ip addr add 10.7.0.1/24 dev dummy0 && ip link set dummy0 up || { record setup dummy0; finish; }
rdma link add rxe0 type rxe netdev dummy0 || { record setup rxe0; finish; }
rdma link show
record setup ok

cd /t
export ST_CONFORMANCE_MAX_SIZE=$max_size
port=7470
# pair NAME PARENT_OK CHILD_OK [--case C]: test_conformance in split mode,
# parent and child as two processes on one rxe device
pair() {
    name=$1 want_p=$2 want_c=$3
    shift 3
    port=$((port + 1))
    pidf=/tmp/peer-$name.pid
    timeout -s KILL 90 ./dataplane_test_conformance --role parent --transport rdma \
        --addr 127.0.0.1:$port "$@" --peer-pid-file $pidf >/tmp/parent.log 2>&1 &
    ppid=$!
    timeout -s KILL 90 ./dataplane_test_conformance --role child --transport rdma \
        --addr 127.0.0.1:$port "$@" --peer-pid-file $pidf >/tmp/child.log 2>&1
    crc=$?
    wait $ppid
    prc=$?
    sed 's/^/parent: /' /tmp/parent.log | grep -v 'rdma: link up'
    sed 's/^/child: /' /tmp/child.log | grep -v 'rdma: link up'
    if [ $prc = "$want_p" ] && [ $crc = "$want_c" ]; then record "$name" ok; else record "$name" "rc$prc/$crc"; fi
}

for s in $steps; do
    case "$s" in
        test_rdma)
            timeout -s KILL 120 ./dataplane_test_rdma >/tmp/rdma.log 2>&1
            rc=$?
            grep -v 'rdma: link up' /tmp/rdma.log
            [ $rc = 0 ] && record test_rdma ok || record test_rdma "rc$rc"
            ;;
        conformance) pair conformance 0 0 ;;
        # the child must end killed (137), never by returning
        killed-sender|stalled-sender|dead-receiver) pair "$s" 0 137 --case "$s" ;;
        conformance-fork)
            ST_CONFORMANCE_TRANSPORT=rdma timeout -s KILL 150 ./dataplane_test_conformance >/tmp/fork.log 2>&1
            rc=$?
            grep -v 'rdma: link up' /tmp/fork.log
            [ $rc = 0 ] && record conformance-fork ok || record conformance-fork "rc$rc"
            ;;
        bench)
            timeout -s KILL 120 ./strait bench transport --transport rdma --sizes "$bench_sizes" --count 200 --json \
                >/tmp/bench.log 2>&1
            rc=$?
            grep -v 'rdma: link up' /tmp/bench.log
            [ $rc = 0 ] && grep -q '^{"bench":"transport"' /tmp/bench.log && record bench ok || record bench "rc$rc"
            ;;
        *) record "$s" unknown-step ;;
    esac
done
finish
