#!/usr/bin/env bash
# Failover: `strait run -n 2` with two nodes that can each hold the whole
# model forms two single-node pipelines. Streams run on both; one node is
# SIGKILLed mid-stream; every stream must still end with [DONE] and its text
# must equal single-machine `strait run` (greedy): the router moved the
# dead pipeline's requests (prompt + tokens so far) to the healthy one.
# Then a new node joins and is given the layers of a new pipeline.
#   test_cluster_failover.sh path/to/strait
set -uo pipefail
STRAIT=${1:?usage: test_cluster_failover.sh path/to/strait}
MODEL=${ST_TEST_MODEL:-${STRAIT_HOME:-$HOME/.cache/strait}/models/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -f "$MODEL" ] || { echo "SKIP: the default model is not cached ($MODEL; run: strait models pull)"; exit 77; }
command -v curl >/dev/null || { echo "SKIP: curl is not installed"; exit 77; }
"$STRAIT" run --help 2>/dev/null | grep -q -- '--nodes' ||
  { echo "SKIP: this strait run has no --nodes (no cluster scheduler)"; exit 77; }
PY=python3
. "$(dirname "$0")/../lib.sh" # $TMP, PIDS killed on exit, ok / bad
TOKEN=test-failover-token-$$

# Poll $1/cluster/status until the python expression $2 over s (the status) is true, for $3 s.
wait_status() {
  local t_end=$((SECONDS + $3))
  while [ $SECONDS -lt $t_end ]; do
    curl -s -m 5 "$1/cluster/status" -o "$TMP/status.json" &&
      "$PY" -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' \
        "$TMP/status.json" "$2" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "status never satisfied $2:"; cat "$TMP/status.json" 2>/dev/null; echo
  return 1
}

PROMPTS=("The capital of France is" "Once upon a time, in a small village," "def fibonacci(n):" "1, 2, 3, 4,"
         "The three primary colors are" "import numpy as np" "My favourite book is" "Water boils at")
N_TOK=48
body() { "$PY" -c 'import json,sys; print(json.dumps({"model":"m","prompt":sys.argv[1],"max_tokens":int(sys.argv[2]),"temperature":0,"stream":sys.argv[3]=="1"}))' "$1" "$N_TOK" "$2"; }

# ---- one machine: the expected texts ------------------------------------------------------
"$STRAIT" run -m "$MODEL" --host 127.0.0.1 --port 0 -t 1 --kv-cache-memory 67108864 --ctx 2048 >"$TMP/run.log" 2>&1 &
RUN=$!
PIDS+=($RUN)
PORT=$(api_port "$TMP/run.log" $RUN)
[ -n "$PORT" ] || { echo "FAIL: strait run did not start:"; cat "$TMP/run.log"; exit 1; }
for i in "${!PROMPTS[@]}"; do
  curl -s -m 120 -H 'Content-Type: application/json' -d "$(body "${PROMPTS[$i]}" 0)" \
    "http://127.0.0.1:$PORT/v1/completions" | "$PY" -c 'import json,sys; sys.stdout.write(json.load(sys.stdin)["choices"][0]["text"])' >"$TMP/one.$i.txt"
done
kill -TERM $RUN; wait $RUN 2>/dev/null

# ---- two single-node pipelines --------------------------------------------------------------
"$STRAIT" run -m "$MODEL" -n 2 --host 127.0.0.1 --port 0 --cluster-port 0 --cluster-token "$TOKEN" \
  --cluster-host 127.0.0.1 --ctx 2048 --max-batch-size 8 --heartbeat-timeout 3000 >"$TMP/sched.log" 2>&1 &
SC=$!
PIDS+=($SC)
API=$(api_port "$TMP/sched.log" $SC)
CTL=$(ctl_port "$TMP/sched.log" $SC)
[ -n "$API" ] && [ -n "$CTL" ] || { echo "FAIL: strait run -n 2 did not start:"; cat "$TMP/sched.log"; exit 1; }
U=http://127.0.0.1:$API
join() { # name
  "$STRAIT" join -s 127.0.0.1:$CTL --cluster-token "$TOKEN" --port 0 -t 1 --name "$1" --memory-limit 2G \
    --key-file "$TMP/$1.key" >"$TMP/$1.log" 2>&1 &
  PIDS+=($!)
  eval "PID_$1=$!"
}
join a
join b
wait_status "$U" 'sum(p["state"]=="serving" for p in s["pipelines"])==2 and all(len(p["stages"])==1 for p in s["pipelines"])' 180 &&
  ok || { bad "two single-node pipelines did not form"; tail -20 "$TMP/sched.log"; exit 1; }

# every prompt streams at once; node a dies once each stream has sent something
for i in "${!PROMPTS[@]}"; do
  curl -s -N -m 300 -H 'Content-Type: application/json' -d "$(body "${PROMPTS[$i]}" 1)" "$U/v1/completions" \
    -o "$TMP/stream.$i" &
  CURLS+=($!)
done
t_end=$((SECONDS + 120))
while [ $SECONDS -lt $t_end ]; do
  n=0
  for i in "${!PROMPTS[@]}"; do grep -q '"text"' "$TMP/stream.$i" 2>/dev/null && n=$((n + 1)); done
  [ $n = ${#PROMPTS[@]} ] && break
  sleep 0.05
done
# both pipelines must have been busy for the kill to test anything
"$PY" -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(0 if all(p["requests_routed"]>0 for p in s["pipelines"]) else 1)' \
  <(curl -s -m 5 "$U/cluster/status") && ok || bad "requests were not spread over both pipelines"
kill -KILL "$PID_a"
for p in "${CURLS[@]}"; do wait "$p"; done
same=1
for i in "${!PROMPTS[@]}"; do
  "$PY" - "$TMP/stream.$i" >"$TMP/two.$i.txt" <<'EOF' || { same=0; echo "stream $i broken: $(tail -c 300 "$TMP/stream.$i")"; }
import json, sys
text, done, reason = "", False, None
for line in open(sys.argv[1]):
    line = line.strip()
    if not line.startswith("data:"):
        continue
    d = line[5:].strip()
    if d == "[DONE]":
        done = True
        continue
    c = json.loads(d)["choices"][0]
    text += c.get("text") or ""
    reason = c.get("finish_reason") or reason
sys.stdout.write(text)
sys.exit(0 if done and reason in ("stop", "length") else 1)
EOF
  cmp -s "$TMP/one.$i.txt" "$TMP/two.$i.txt" ||
    { same=0; echo "prompt $i: one machine \"$(cat "$TMP/one.$i.txt")\" after failover \"$(cat "$TMP/two.$i.txt")\""; }
done
[ $same = 1 ] && ok || bad "streams after the failover differ from strait run"
grep -q 'pipeline .* down' "$TMP/sched.log" && ok || bad "the scheduler log does not report the dead pipeline"
wait_status "$U" '[n["state"] for n in s["nodes"] if n["name"]=="a"]==["failed"] and s["requests_moved"]>0' 30 &&
  ok || bad "node a is not failed or no request was moved"

# ---- a new node gets layers ----------------------------------------------------------------
join c
wait_status "$U" 'any(n["name"]=="c" and n["layers"] and n["state"]=="ready" for n in s["nodes"]) and sum(p["state"]=="serving" for p in s["pipelines"])==2' 120 &&
  ok || bad "the new node was not given layers"

kill -TERM $SC; wait $SC 2>/dev/null
echo "cluster failover: $pass passed, $fail failed"
[ $fail = 0 ]
