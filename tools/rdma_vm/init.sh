#!/bin/sh
# /init of the RDMA test VM (busybox sh, PID 1). Loads soft-RoCE, puts rxe0
# on dummy0, runs the RDMA tests, prints one result line on the console and
# powers off. The host (tests/dataplane/test_rdma_vm.sh) reads the line:
#
#   STRAIT_RDMA_VM_RESULT status=PASS|FAIL setup=ok <step>=<verdict> ... seconds=S
#
# A verdict is "ok" only with the exit status(es) the step's contract
# requires; else "rcP/C" (parent/child) or "rcN", "killed" (ran out of its
# time and was killed) or "no-time" (the budget was spent before it began).
# The line is printed once, last; no line at all (a crash, a hang the host
# killed) is a failure there.
#
# Kernel command line options (all optional):
#   strait.steps=a,b,...   steps to run, in this order (default: all below but
#                          conformance-fork, which repeats the cases in fork mode)
#   strait.budget=S        seconds from boot for all steps (default 240); each
#                          step is killed when it would outlast it, so the result
#                          line is printed before the host's own limit
#   strait.max_size=B      largest conformance echo size and message (default
#                          2 MiB: emulated soft-RoCE moves a few MB/s to tens)
#   strait.bench_sizes=... sizes for `strait bench transport` (default 64,4K,64K)
export PATH=/bin:/t
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp

steps="test_rdma conformance killed-sender stalled-sender dead-receiver bench"
budget=240
max_size=2097152
bench_sizes=64,4K,64K
for a in $(cat /proc/cmdline); do
    case "$a" in
        strait.steps=*) steps=$(echo "${a#strait.steps=}" | tr ',' ' ') ;;
        strait.budget=*) budget=${a#strait.budget=} ;;
        strait.max_size=*) max_size=${a#strait.max_size=} ;;
        strait.bench_sizes=*) bench_sizes=${a#strait.bench_sizes=} ;;
    esac
done

uptime_s() { cut -d. -f1 /proc/uptime; }
results=""
status=PASS
record() { # record STEP VERDICT
    results="$results $1=$2"
    [ "$2" = ok ] || status=FAIL
    echo "== $1: $2 (at $(cut -d' ' -f1 /proc/uptime) s since boot)"
}
finish() {
    echo "STRAIT_RDMA_VM_RESULT status=$status$results seconds=$(cut -d' ' -f1 /proc/uptime)"
    sync
    poweroff -f
    sleep 10
}
# limit WANT: seconds a step may take, WANT or what is left of the budget
limit() {
    left=$((budget - $(uptime_s)))
    [ "$left" -lt "$1" ] && echo "$left" || echo "$1"
}
# verdict RC: ok for 0, killed for 137 (our timeout), else rcN
verdict() {
    case "$1" in 0) echo ok ;; 137) echo killed ;; *) echo "rc$1" ;; esac
}

# ---- soft-RoCE on a dummy interface (rxe needs a netdev with an address; not lo)
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
# pair NAME PARENT_OK CHILD_OK SECONDS [--case C]: test_conformance in split
# mode, parent and child as two processes on the one rxe device
pair() {
    name=$1 want_p=$2 want_c=$3 t=$(limit "$4")
    shift 4
    port=$((port + 1))
    pidf=/tmp/peer-$name.pid
    timeout -s KILL "$t" ./dataplane_test_conformance --role parent --transport rdma \
        --addr 127.0.0.1:$port "$@" --peer-pid-file $pidf >/tmp/parent.log 2>&1 &
    ppid=$!
    timeout -s KILL "$t" ./dataplane_test_conformance --role child --transport rdma \
        --addr 127.0.0.1:$port "$@" --peer-pid-file $pidf >/tmp/child.log 2>&1
    crc=$?
    wait $ppid
    prc=$?
    sed 's/^/parent: /' /tmp/parent.log | grep -v 'rdma: link up'
    sed 's/^/child: /' /tmp/child.log | grep -v 'rdma: link up'
    if [ $prc = "$want_p" ] && [ $crc = "$want_c" ]; then
        record "$name" ok
    elif [ $prc = 137 ]; then
        record "$name" killed
    else
        record "$name" "rc$prc/$crc"
    fi
}

for s in $steps; do
    if [ "$(limit 10)" -lt 10 ]; then
        record "$s" no-time
        continue
    fi
    case "$s" in
        test_rdma)
            timeout -s KILL "$(limit 120)" ./dataplane_test_rdma >/tmp/rdma.log 2>&1
            rc=$?
            grep -v 'rdma: link up' /tmp/rdma.log
            record test_rdma "$(verdict $rc)"
            ;;
        conformance) pair conformance 0 0 150 ;;
        # the child must end killed (137), never by returning
        killed-sender|stalled-sender|dead-receiver) pair "$s" 0 137 40 --case "$s" ;;
        conformance-fork)
            ST_CONFORMANCE_TRANSPORT=rdma timeout -s KILL "$(limit 200)" ./dataplane_test_conformance \
                >/tmp/fork.log 2>&1
            rc=$?
            grep -v 'rdma: link up' /tmp/fork.log
            record conformance-fork "$(verdict $rc)"
            ;;
        bench)
            timeout -s KILL "$(limit 60)" ./strait bench transport --transport rdma --sizes "$bench_sizes" \
                --count 200 --json >/tmp/bench.log 2>&1
            rc=$?
            grep -v 'rdma: link up' /tmp/bench.log
            [ $rc = 0 ] && ! grep -q '^{"bench":"transport"' /tmp/bench.log && rc=no-json
            record bench "$(verdict $rc)"
            ;;
        *) record "$s" unknown-step ;;
    esac
done
finish
