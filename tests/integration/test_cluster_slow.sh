#!/usr/bin/env bash
# A cluster over slow links: `strait run -n 2` and two `strait join` nodes on
# loopback, every process with STRAIT_LINK_DELAY_MS=35 (each data message
# on every tcp link is held 35 ms, as on a long path; heartbeats are not),
# the data plane forced to tcp. Streaming greedy completions must arrive
# whole (ending in [DONE]) and identical to a single `strait run`.
#   test_cluster_slow.sh path/to/strait
# Skips (77) when the default model is not cached or curl is missing.
set -uo pipefail
STRAIT=${1:?usage: test_cluster_slow.sh path/to/strait}
HERE=$(cd "$(dirname "$0")" && pwd)
MODEL=${ST_TEST_MODEL:-${STRAIT_HOME:-$HOME/.cache/strait}/models/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -f "$MODEL" ] || { echo "SKIP: the default model is not cached ($MODEL; run: strait models pull)"; exit 77; }
command -v curl >/dev/null || { echo "SKIP: curl is not installed"; exit 77; }
"$STRAIT" run --help 2>/dev/null | grep -q -- '--nodes' ||
  { echo "SKIP: this strait run has no --nodes (no cluster scheduler)"; exit 77; }
DELAY=${DELAY_MS:-35}

. "$(dirname "$0")/../lib.sh" # $TMP, PIDS killed on exit, ok / bad

. "$HERE/cluster_lib.sh"

N_LAYERS=$(model_layers) || exit 1
CUT=$((N_LAYERS / 2))

# ---- one machine (no delay) --------------------------------------------------------------
"$STRAIT" run -m "$MODEL" --host 127.0.0.1 --port 0 -t 1 --kv-cache-memory 67108864 --ctx 2048 \
  >"$TMP/run.log" 2>&1 &
RUN=$!
PIDS+=($RUN)
PORT=$(api_port "$TMP/run.log" $RUN)
[ -n "$PORT" ] || { echo "FAIL: strait run did not start:"; cat "$TMP/run.log"; exit 1; }
stream_all "http://127.0.0.1:$PORT" "$TMP/one"
kill -TERM $RUN; wait $RUN 2>/dev/null

# ---- the cluster, every link slow ------------------------------------------------------------
export STRAIT_LINK_DELAY_MS=$DELAY
start_cluster slow --transport tcp
ok
t0=$(date +%s%N)
stream_all "http://127.0.0.1:$PORT" "$TMP/slow"
t1=$(date +%s%N)
compare_all "$TMP/one" "$TMP/slow" "slow links (${DELAY} ms)" && ok || bad "streamed output over slow links differs"
echo "slow cluster: ${#PROMPTS[@]} streams in $(((t1 - t0) / 1000000)) ms with ${DELAY} ms per message per hop"
# the hook was on: a step crosses 3 links (head -> node1 -> node2 -> head), so
# MAX_TOKENS greedy tokens take at least 3 x delay each
min_ms=$((MAX_TOKENS * 3 * DELAY))
[ $(((t1 - t0) / 1000000)) -ge $min_ms ] && ok || bad "streams finished faster than the delay allows ($min_ms ms)"

kill -TERM $SCHED; wait $SCHED 2>/dev/null
echo "cluster_slow: $pass passed, $fail failed"
[ $fail = 0 ]
