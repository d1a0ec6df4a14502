#!/usr/bin/env bash
# `strait serve --transport dpdk`: a two-stage pipeline of real processes
# whose activations travel over DPDK memif ports (head -> stage on one
# abstract socket, stage -> head on another; each process starts its own
# EAL from --dpdk-args / --dataplane-cores). Greedy completions of several
# concurrent prompts must equal `strait run` on one machine. Also checks
# that a bad --dpdk-peer is refused at option parsing, and that a refused
# --dpdk-args is a clear start-up error, not a crash.
#   test_dpdk_serve.sh path/to/strait
# Skips (77) without DPDK in the build, the default model, or curl.
set -uo pipefail
STRAIT=${1:?usage: test_dpdk_serve.sh path/to/strait}
MODEL=${ST_TEST_MODEL:-${STRAIT_HOME:-$HOME/.cache/strait}/models/SmolLM2-135M-Instruct.Q4_1.gguf}
grep -qa st_dpdk_ops "$STRAIT" || { echo "SKIP: built without DPDK"; exit 77; }
[ -f "$MODEL" ] || { echo "SKIP: the default model is not cached ($MODEL; run: strait models pull)"; exit 77; }
command -v curl >/dev/null || { echo "SKIP: curl is not installed"; exit 77; }
PY=python3

. "$(dirname "$0")/../lib.sh" # $TMP, PIDS killed on exit, ok / bad
. "$(dirname "$0")/../lib_model.sh" # PROMPTS, complete_all, model_layers

N_LAYERS=$(model_layers) || exit 1
CUT=$((N_LAYERS / 2))

# ---- option checks (no EAL started) ---------------------------------------------------------
out=$("$STRAIT" serve --model-path "$MODEL" --start-layer 0 --transport dpdk --dpdk-peer nonsense 2>&1)
rc=$?
if [ $rc = 2 ] && grep -q "dpdk-peer 'nonsense'" <<<"$out"; then ok; else bad "bad --dpdk-peer: exit $rc: $out"; fi
out=$("$STRAIT" serve --model-path "$MODEL" --start-layer 0 --transport dpdk --dataplane-cores 'x' 2>&1)
rc=$?
if [ $rc = 2 ] && grep -qi "list 'x'" <<<"$out"; then ok; else bad "bad --dataplane-cores: exit $rc: $out"; fi

# ---- a refused EAL argument: an error naming it, exit 1, no signal ----------------------------
timeout 60 "$STRAIT" serve --model-path "$MODEL" --start-layer $CUT --end-layer -1 --transport dpdk -t 1 \
  --listen "net_memif,socket=/strait-serve-bad-$$,socket-abstract=yes" --next "net_memif,socket=/x,socket-abstract=yes" \
  --dpdk-args "--no-huge --strait-bogus-eal-flag" >"$TMP/badargs.log" 2>&1
rc=$?
if [ $rc = 1 ] && grep -q "EAL did not start.*--strait-bogus-eal-flag" "$TMP/badargs.log"; then ok; else
  bad "bad --dpdk-args: exit $rc: $(grep -v '^ ' "$TMP/badargs.log" | tail -3)"; fi

# ---- one machine ----------------------------------------------------------------------------
"$STRAIT" run -m "$MODEL" --host 127.0.0.1 --port 0 -t 1 --kv-cache-memory 67108864 --ctx 2048 \
  >"$TMP/run.log" 2>&1 &
RUN=$!
PIDS+=($RUN)
PORT=$(api_port "$TMP/run.log" $RUN)
[ -n "$PORT" ] || { echo "FAIL: strait run did not start:"; cat "$TMP/run.log"; exit 1; }
complete_all "http://127.0.0.1:$PORT" "$TMP/one"
kill -TERM $RUN; wait $RUN 2>/dev/null

# ---- two stages over dpdk memif ----------------------------------------------------------------
S2="net_memif,socket=/strait-serve-s2-$$,socket-abstract=yes"
HEAD="net_memif,socket=/strait-serve-head-$$,socket-abstract=yes"
CORE=$(( $(nproc) > 1 ? 1 : 0 ))
"$STRAIT" serve --model-path "$MODEL" --start-layer $CUT --end-layer -1 --listen "$S2" --next "$HEAD" \
  --transport dpdk --dataplane-cores $CORE --dpdk-args "--no-huge -m 256" -t 1 >"$TMP/s2.log" 2>&1 &
ST2=$!
PIDS+=($ST2)
"$STRAIT" serve --model-path "$MODEL" --start-layer 0 --end-layer $CUT --listen "$HEAD" --next "$S2" \
  --transport dpdk --dataplane-cores 0 --dpdk-args "--no-huge -m 256" --host 127.0.0.1 --port 0 -t 1 \
  --kv-blocks 256 --ctx 2048 --max-batch-size 8 >"$TMP/head.log" 2>&1 &
HD=$!
PIDS+=($HD)
PORT=$(api_port "$TMP/head.log" $HD)
if [ -z "$PORT" ] && grep -q "EAL did not start" "$TMP/head.log" "$TMP/s2.log"; then
  grep -h -m1 "EAL did not start" "$TMP/head.log" "$TMP/s2.log"
  echo "SKIP: the DPDK EAL does not start here"
  exit 77
fi
if [ -z "$PORT" ]; then
  bad "dpdk: the head did not start"; grep -v "mp action" "$TMP/head.log" "$TMP/s2.log" | tail -20
else
  complete_all "http://127.0.0.1:$PORT" "$TMP/pipe"
  same=1
  for i in "${!PROMPTS[@]}"; do
    if [ -s "$TMP/one.$i.txt" ] && cmp -s "$TMP/one.$i.txt" "$TMP/pipe.$i.txt"; then :; else
      same=0
      echo "dpdk: prompt $i differs: one machine \"$(cat "$TMP/one.$i.txt")\" pipeline \"$(cat "$TMP/pipe.$i.txt" 2>/dev/null)\""
    fi
  done
  if [ $same = 1 ]; then ok; else bad "dpdk: pipeline output differs from strait run"; fi
  grep -q "(dpdk)" "$TMP/head.log" && ok || bad "dpdk: the head does not report the dpdk transport"
fi
kill -TERM $HD $ST2 2>/dev/null; wait $HD $ST2 2>/dev/null

echo "dpdk serve: $pass passed, $fail failed"
[ $fail = 0 ]
