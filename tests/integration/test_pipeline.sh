#!/usr/bin/env bash
# A manual pipeline of real processes: `strait serve` for the head (layers
# [0,k), the batcher and the API) and for a second stage ([k,n)), over tcp
# and then shm on 127.0.0.1. Greedy completions of several concurrent
# requests must equal `strait run` on one machine; when the second stage is
# killed, a request fails with an error instead of hanging. With
# --activation-compression int8 (lossy) the first token of every prompt
# must still equal one machine's, and the stage must report int8 hidden states.
#   test_pipeline.sh path/to/strait
# Skips (77) when the default model is not cached or curl is missing.
set -uo pipefail
STRAIT=${1:?usage: test_pipeline.sh path/to/strait}
MODEL=${ST_TEST_MODEL:-${STRAIT_HOME:-$HOME/.cache/strait}/models/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -f "$MODEL" ] || { echo "SKIP: the default model is not cached ($MODEL; run: strait models pull)"; exit 77; }
command -v curl >/dev/null || { echo "SKIP: curl is not installed"; exit 77; }
PY=python3

. "$(dirname "$0")/../lib.sh" # $TMP, PIDS killed on exit, ok / bad
. "$(dirname "$0")/../lib_model.sh" # PROMPTS, complete_all, model_layers
MAXTOK=24

N_LAYERS=$(model_layers) || exit 1
CUT=$((N_LAYERS / 2))
COMMON=(-t 1 --kv-blocks 256 --ctx 2048 --max-batch-size 8)

# ---- one machine ---------------------------------------------------------------------
"$STRAIT" run -m "$MODEL" --host 127.0.0.1 --port 0 -t 1 --kv-cache-memory 67108864 --ctx 2048 \
  >"$TMP/run.log" 2>&1 &
RUN=$!
PIDS+=($RUN)
PORT=$(api_port "$TMP/run.log" $RUN)
[ -n "$PORT" ] || { echo "FAIL: strait run did not start:"; cat "$TMP/run.log"; exit 1; }
complete_all "http://127.0.0.1:$PORT" "$TMP/one"
MAXTOK=1 complete_all "http://127.0.0.1:$PORT" "$TMP/one1"
kill -TERM $RUN; wait $RUN 2>/dev/null

# ---- two stages --------------------------------------------------------------------------
for transport in tcp shm; do
  if [ $transport = tcp ]; then
    base=$((20000 + RANDOM % 20000))
    S2=127.0.0.1:$base; HEAD=127.0.0.1:$((base + 1))
  else
    S2=@strait-pipe-$$-s2; HEAD=@strait-pipe-$$-head
  fi
  "$STRAIT" serve --model-path "$MODEL" --start-layer $CUT --end-layer -1 --listen $S2 --next $HEAD \
    --transport $transport -t 1 >"$TMP/s2.$transport.log" 2>&1 &
  ST2=$!
  PIDS+=($ST2)
  "$STRAIT" serve --model-path "$MODEL" --start-layer 0 --end-layer $CUT --listen $HEAD --next $S2 \
    --transport $transport --host 127.0.0.1 --port 0 "${COMMON[@]}" >"$TMP/head.$transport.log" 2>&1 &
  HD=$!
  PIDS+=($HD)
  PORT=$(api_port "$TMP/head.$transport.log" $HD)
  if [ -z "$PORT" ]; then
    bad "$transport: the head did not start"; cat "$TMP/head.$transport.log" "$TMP/s2.$transport.log"
    kill -KILL $ST2 $HD 2>/dev/null
    continue
  fi
  complete_all "http://127.0.0.1:$PORT" "$TMP/pipe.$transport"
  same=1
  for i in "${!PROMPTS[@]}"; do
    if [ -s "$TMP/one.$i.txt" ] && cmp -s "$TMP/one.$i.txt" "$TMP/pipe.$transport.$i.txt"; then :; else
      same=0
      echo "$transport: prompt $i differs: one machine \"$(cat "$TMP/one.$i.txt")\" pipeline \"$(cat "$TMP/pipe.$transport.$i.txt" 2>/dev/null)\""
    fi
  done
  if [ $same = 1 ]; then ok; else bad "$transport: pipeline output differs from strait run"; fi

  # the second stage dies: the next request ends with an error, in bounded time
  kill -KILL $ST2; wait $ST2 2>/dev/null
  t0=$(date +%s)
  code=$(curl -s -m 60 -o "$TMP/dead.$transport" -w '%{http_code}' -H 'Content-Type: application/json' \
    -d '{"model":"m","prompt":"Hello","max_tokens":8,"temperature":0}' "http://127.0.0.1:$PORT/v1/completions")
  t1=$(date +%s)
  if [ "$code" != 200 ] || grep -q '"error"\|"finish_reason":"error"' "$TMP/dead.$transport"; then
    ok
  else
    bad "$transport: request after the stage died: HTTP $code $(cat "$TMP/dead.$transport")"
  fi
  [ $((t1 - t0)) -lt 30 ] && ok || bad "$transport: failing took $((t1 - t0)) s"
  kill -TERM $HD; wait $HD 2>/dev/null
done

# ---- two stages, int8 hidden states --------------------------------------------------------
base=$((20000 + RANDOM % 20000))
S2=127.0.0.1:$base; HEAD=127.0.0.1:$((base + 1))
"$STRAIT" serve --model-path "$MODEL" --start-layer $CUT --end-layer -1 --listen $S2 --next $HEAD -t 1 \
  >"$TMP/s2.int8.log" 2>&1 &
ST2=$!
PIDS+=($ST2)
"$STRAIT" serve --model-path "$MODEL" --start-layer 0 --end-layer $CUT --listen $HEAD --next $S2 \
  --activation-compression int8 --host 127.0.0.1 --port 0 "${COMMON[@]}" >"$TMP/head.int8.log" 2>&1 &
HD=$!
PIDS+=($HD)
PORT=$(api_port "$TMP/head.int8.log" $HD)
if [ -z "$PORT" ]; then
  bad "int8: the head did not start"; cat "$TMP/head.int8.log" "$TMP/s2.int8.log"
else
  MAXTOK=1 complete_all "http://127.0.0.1:$PORT" "$TMP/int8.1"
  complete_all "http://127.0.0.1:$PORT" "$TMP/int8"
  same1=1 same=0
  for i in "${!PROMPTS[@]}"; do
    if [ -s "$TMP/one1.$i.txt" ] && cmp -s "$TMP/one1.$i.txt" "$TMP/int8.1.$i.txt"; then :; else
      same1=0
      echo "int8: prompt $i: first token \"$(cat "$TMP/one1.$i.txt")\" on one machine, \"$(cat "$TMP/int8.1.$i.txt" 2>/dev/null)\" with int8"
    fi
    [ -s "$TMP/int8.$i.txt" ] || bad "int8: prompt $i: no completion"
    cmp -s "$TMP/one.$i.txt" "$TMP/int8.$i.txt" && same=$((same + 1))
  done
  if [ $same1 = 1 ]; then ok; else bad "int8: a first token differs from strait run"; fi
  echo "int8: $same of ${#PROMPTS[@]} completions of $MAXTOK tokens equal one machine's (lossy: not required)"
  if grep -q "int8 activations" "$TMP/s2.int8.log"; then ok; else bad "int8: the stage was not set up for int8"; fi
fi
kill -TERM $HD $ST2 2>/dev/null; wait $HD $ST2 2>/dev/null

echo "pipeline: $pass passed, $fail failed"
[ $fail = 0 ]
