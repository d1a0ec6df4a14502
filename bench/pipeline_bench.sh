#!/usr/bin/env bash
# Serving throughput of a 2-stage pipeline against one machine with the same
# cores, on this host:
#   one      strait run -t 2                         (every layer in one process)
#   shm      strait run -n 2 + 2 x strait join -t 1  (stages linked over shared memory)
#   tcp      the same over TCP on loopback
#   netns    the same over TCP, each node in its own network namespace (veth; root only)
#   delay35  tcp with STRAIT_LINK_DELAY_MS=35 on every process (a coast-to-coast link each way)
#   delay35x1  the same with one micro-batch in flight (--max-inflight 1): what pipelining hides
# Each runs `strait bench serve` (streaming completions, greedy, full length) and
# the script prints a table and one JSON line per configuration with output tok/s,
# TTFT/TPOT p50/p99 and efficiency = tok/s / one's tok/s from the same run.
#
#   bench/pipeline_bench.sh [path/to/strait] [CONCURRENCY] [REQUESTS]
#
# Environment: MODEL (default: the default model), CONFIGS (default: all of the above),
# INPUT_LEN / OUTPUT_LEN (64 / 64). A noisy shared machine: compare ratios from one run.
set -u
STRAIT=$(readlink -f "${1:-build/strait}")
CONC=${2:-16}
NREQ=${3:-32}
IN=${INPUT_LEN:-64}
OUT=${OUTPUT_LEN:-64}
CONFIGS=${CONFIGS:-one shm tcp netns delay35 delay35x1}
MODEL=${MODEL:-$("$STRAIT" models path 2>/dev/null)}
[ -f "$MODEL" ] || { echo "no model (set MODEL or run: strait models pull)" >&2; exit 1; }
N_LAYERS=$("$STRAIT" inspect -m "$MODEL" 2>/dev/null | sed -n 's/^ *layers \([0-9]*\)$/\1/p' | head -1)
[ -n "$N_LAYERS" ] || N_LAYERS=30
CUT=$((N_LAYERS / 2))
TOKEN=pipeline-bench-$$
TMP=$(mktemp -d)
PIDS=()
NS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null; done
  rm -rf "$TMP"
}
trap cleanup EXIT

# wait up to 120 s for sed pattern $2 in file $1; echo the match
wait_log() {
  for _ in $(seq 1200); do
    m=$(sed -n "$2" "$1" | head -1)
    [ -n "$m" ] && { echo "$m"; return 0; }
    sleep 0.1
  done
  return 1
}
wait_serving() { # $2: a command prefix to run curl where the API is (a namespace)
  for _ in $(seq 1200); do
    ${2:-} curl -s -m 2 "$1/cluster/status" | grep -q '"state":"serving"' && return 0
    sleep 0.1
  done
  return 1
}
stop_all() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  PIDS=()
}

# start_cluster NAME TRANSPORT [EXEC_SCHED EXEC_A EXEC_B HOST_A HOST_B]: the API URL in $url
# (not echoed: a command substitution's subshell would keep the pids from stop_all)
start_cluster() {
  local name=$1 tr=$2 xs=${3:-} xa=${4:-} xb=${5:-} sa=${6:-127.0.0.1} sb=${7:-127.0.0.1}
  $xs "$STRAIT" run -m "$MODEL" -n 2 --port 0 --host 127.0.0.1 --cluster-port 0 --cluster-token "$TOKEN" \
    --transport "$tr" ${SCHED_EXTRA:-} >"$TMP/$name.sched.log" 2>&1 &
  PIDS+=($!)
  local api ctl
  api=$(wait_log "$TMP/$name.sched.log" 's|.*listening on http://127\.0\.0\.1:\([0-9]*\).*|\1|p') || return 1
  ctl=$(wait_log "$TMP/$name.sched.log" 's|.*join with: strait join -s [^ ]*:\([0-9]*\) .*|\1|p') || return 1
  $xa "$STRAIT" join -s "$sa:$ctl" --cluster-token "$TOKEN" --port 0 -t 1 --start-layer 0 --end-layer $CUT \
    --key-file "$TMP/$name.a.key" >"$TMP/$name.a.log" 2>&1 &
  PIDS+=($!)
  $xb "$STRAIT" join -s "$sb:$ctl" --cluster-token "$TOKEN" --port 0 -t 1 --start-layer $CUT \
    --end-layer $N_LAYERS --key-file "$TMP/$name.b.key" >"$TMP/$name.b.log" 2>&1 &
  PIDS+=($!)
  wait_serving "http://127.0.0.1:$api" "$xs" || return 1
  url="http://127.0.0.1:$api"
}

setup_netns() {
  [ "$(id -u)" = 0 ] && command -v ip >/dev/null || return 1
  local k=$((200 + $$ % 50))
  NS=(stbS$$ stbA$$ stbB$$)
  for n in "${NS[@]}"; do ip netns add "$n" || return 1; done
  ip -n "${NS[0]}" link add sa type veth peer name veth-a netns "${NS[1]}" || return 1
  ip -n "${NS[0]}" link add sb type veth peer name veth-b netns "${NS[2]}" || return 1
  for n in "${NS[@]}"; do ip -n "$n" link set lo up; done
  ip -n "${NS[0]}" addr add 10.$k.1.1/24 dev sa && ip -n "${NS[0]}" link set dev sa up
  ip -n "${NS[0]}" addr add 10.$k.2.1/24 dev sb && ip -n "${NS[0]}" link set dev sb up
  ip -n "${NS[1]}" addr add 10.$k.1.2/24 dev veth-a && ip -n "${NS[1]}" link set dev veth-a up
  ip -n "${NS[2]}" addr add 10.$k.2.2/24 dev veth-b && ip -n "${NS[2]}" link set dev veth-b up
  ip -n "${NS[1]}" route add default via 10.$k.1.1
  ip -n "${NS[2]}" route add default via 10.$k.2.1
  ip netns exec "${NS[0]}" sysctl -qw net.ipv4.ip_forward=1
  NETNS_K=$k
}

# bench NAME URL: one JSON line of strait bench serve into $TMP/NAME.json
bench() {
  "$STRAIT" bench serve --url "$2" --input-len "$IN" --output-len "$OUT" --num-requests "$NREQ" \
    --max-concurrency "$CONC" --seed $RANDOM --json >"$TMP/$1.out" 2>"$TMP/$1.err"
  grep '^{' "$TMP/$1.out" | tail -1 >"$TMP/$1.json"
  [ -s "$TMP/$1.json" ]
}

for c in $CONFIGS; do
  url=
  case $c in
  one)
    "$STRAIT" run -m "$MODEL" -t 2 --port 0 --host 127.0.0.1 >"$TMP/one.log" 2>&1 &
    PIDS+=($!)
    p=$(wait_log "$TMP/one.log" 's|.*listening on http://127\.0\.0\.1:\([0-9]*\).*|\1|p') && url=http://127.0.0.1:$p
    ;;
  shm) start_cluster shm shm ;;
  tcp) start_cluster tcp tcp ;;
  delay35)
    export STRAIT_LINK_DELAY_MS=35
    start_cluster delay35 tcp
    unset STRAIT_LINK_DELAY_MS
    ;;
  delay35x1)
    export STRAIT_LINK_DELAY_MS=35
    SCHED_EXTRA="--max-inflight 1"
    start_cluster delay35x1 tcp
    unset STRAIT_LINK_DELAY_MS SCHED_EXTRA
    ;;
  netns)
    if setup_netns; then
      # the API listens inside the scheduler's namespace: bench from there too
      start_cluster netns tcp "ip netns exec ${NS[0]}" "ip netns exec ${NS[1]}" "ip netns exec ${NS[2]}" \
        10.$NETNS_K.1.1 10.$NETNS_K.2.1
      BENCH_X="ip netns exec ${NS[0]}"
    else
      echo "netns: skipped (needs root and ip netns)" >&2
    fi
    ;;
  esac
  if [ -z "$url" ]; then
    echo "$c: did not start (logs: $(ls "$TMP" | grep "^$c" | tr '\n' ' '))" >&2
    tail -5 "$TMP/$c".*log 2>/dev/null >&2
    stop_all
    continue
  fi
  if [ "$c" = netns ]; then
    $BENCH_X "$STRAIT" bench serve --url "$url" --input-len "$IN" --output-len "$OUT" --num-requests "$NREQ" \
      --max-concurrency "$CONC" --seed $RANDOM --json >"$TMP/$c.out" 2>"$TMP/$c.err"
    grep '^{' "$TMP/$c.out" | tail -1 >"$TMP/$c.json"
  else
    bench "$c" "$url"
  fi
  [ -s "$TMP/$c.json" ] || { echo "$c: bench failed: $(tail -3 "$TMP/$c.err")" >&2; }
  stop_all
done

python3 - "$TMP" "$CONC" $CONFIGS <<'EOF'
import json, os, sys
tmp, conc, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
res = {}
for n in names:
    p = os.path.join(tmp, n + ".json")
    if os.path.exists(p) and os.path.getsize(p):
        res[n] = json.loads(open(p).read())
def g(j, key):
    """j[key], or j[a][b] for key "a.b"; NaN when absent"""
    for k in key.split("."):
        if not isinstance(j, dict) or k not in j:
            return float("nan")
        j = j[k]
    return j
base = g(res["one"], "output_tok_s") if "one" in res else None
print(f"{'config':8} {'tok/s':>8} {'eff':>5} {'TTFT p50':>9} {'TTFT p99':>9} {'TPOT p50':>9} {'TPOT p99':>9}  (ms)")
for n in names:
    if n not in res:
        print(f"{n:8} (no result)")
        continue
    j = res[n]
    t = g(j, "output_tok_s")
    eff = t / base if base else float("nan")
    row = [g(j, "ttft_ms.p50"), g(j, "ttft_ms.p99"), g(j, "tpot_ms.p50"), g(j, "tpot_ms.p99")]
    print(f"{n:8} {t:8.1f} {eff:5.2f} " + " ".join(f"{x:9.1f}" for x in row))
for n in names:
    if n in res:
        j = dict(res[n])
        t = g(j, "output_tok_s")
        print(json.dumps({"bench": "pipeline", "config": n, "concurrency": conc, "output_tok_s": t,
                          "efficiency": (t / base) if base else None,
                          "ttft_p50_ms": g(j, "ttft_ms.p50"), "ttft_p99_ms": g(j, "ttft_ms.p99"),
                          "tpot_p50_ms": g(j, "tpot_ms.p50"), "tpot_p99_ms": g(j, "tpot_ms.p99")}))
EOF
