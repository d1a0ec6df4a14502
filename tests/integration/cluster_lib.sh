# Helpers shared by the cluster tests (sourced, not run). Every wait has a
# deadline and stops early when the process it waits for has died.
# NS_EXEC (optional): a command prefix that runs curl/python where the API
# is reachable, e.g. "ip netns exec NS".

. "$(dirname "${BASH_SOURCE[0]}")/../lib_model.sh" # PROMPTS, complete_all, model_layers
. "$(dirname "${BASH_SOURCE[0]}")/../lib_wait.sh" # wait_log, api_port
MAX_TOKENS=${MAX_TOKENS:-16}

# wait_serving URL SECONDS PID: until GET URL/cluster/status shows a serving pipeline.
wait_serving() {
  local url=$1 end=$((SECONDS + $2)) pid=$3
  while [ $SECONDS -lt $end ]; do
    if ${NS_EXEC:-} curl -s -m 5 "$url/cluster/status" 2>/dev/null | grep -q '"state":"serving"'; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}

# start_cluster NAME [SCHEDULER_ARGS...]: `strait run -n 2` on loopback (plus
# SCHEDULER_ARGS), then two `strait join` holding [0, CUT) and [CUT, N_LAYERS);
# returns once a pipeline serves, with SCHED (the scheduler's pid), CTL (its
# cluster address) and PORT (its API port) set; a FAIL and exit 1 otherwise.
# Reads STRAIT, MODEL, TMP, CUT, N_LAYERS; adds every process to PIDS.
start_cluster() {
  local name=$1 i range
  shift
  local token=$name-$$-$RANDOM
  "$STRAIT" run -m "$MODEL" -n 2 --cluster-token "$token" --cluster-port 0 --cluster-host 127.0.0.1 \
    --host 127.0.0.1 --port 0 -t 1 --kv-cache-memory 67108864 --ctx 2048 "$@" >"$TMP/sched.log" 2>&1 &
  SCHED=$!
  PIDS+=($SCHED)
  CTL=$(wait_log "$TMP/sched.log" $SCHED 's|.*strait join -s \([^ ]*\).*|\1|p')
  PORT=$(api_port "$TMP/sched.log" $SCHED)
  if [ -z "$CTL" ] || [ -z "$PORT" ]; then
    echo "FAIL: the scheduler did not start:"; cat "$TMP/sched.log"; exit 1
  fi
  for i in 1 2; do
    if [ $i = 1 ]; then range=(--start-layer 0 --end-layer $CUT); else range=(--start-layer $CUT --end-layer $N_LAYERS); fi
    "$STRAIT" join -s "$CTL" --cluster-token "$token" --port 0 --name "$name$i" --key-file "$TMP/node$i.key" \
      -t 1 "${range[@]}" >"$TMP/node$i.log" 2>&1 &
    PIDS+=($!)
  done
  if ! wait_serving "http://127.0.0.1:$PORT" 180 $SCHED; then
    echo "FAIL: no pipeline became ready"; tail -20 "$TMP/sched.log" "$TMP/node1.log" "$TMP/node2.log"; exit 1
  fi
}

# stream_all URL OUT: every prompt at once, streamed (SSE), temperature 0.
# OUT.N.txt gets the concatenated text of prompt N when its stream ended with
# [DONE] and had no error, else OUT.N.err explains.
stream_all() {
  local url=$1 out=$2 i=0 pids=()
  for p in "${PROMPTS[@]}"; do
    ${NS_EXEC:-} python3 - "$url" "$p" "$MAX_TOKENS" "$out.$i" <<'EOF' &
import json, sys, urllib.request
url, prompt, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
body = json.dumps({"model": "m", "prompt": prompt, "max_tokens": n, "temperature": 0, "stream": True}).encode()
req = urllib.request.Request(url + "/v1/completions", body, {"Content-Type": "application/json"})
text, done, err = [], False, None
try:
    with urllib.request.urlopen(req, timeout=300) as r:
        for raw in r:
            line = raw.decode().strip()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                break
            ev = json.loads(data)
            if "error" in ev:
                err = json.dumps(ev["error"])
                break
            c = ev["choices"][0]
            text.append(c.get("text", ""))
            if c.get("finish_reason") == "error":
                err = "finish_reason error"
except Exception as e:
    err = repr(e)
if done and not err:
    open(out + ".txt", "w").write("".join(text))
else:
    open(out + ".err", "w").write(err or "stream ended without [DONE]")
EOF
    pids+=($!)
    i=$((i + 1))
  done
  for p in "${pids[@]}"; do wait "$p"; done
}

# compare_all A B LABEL: every A.N.txt equals B.N.txt (and is non-empty).
compare_all() {
  local a=$1 b=$2 label=$3 same=0
  for i in "${!PROMPTS[@]}"; do
    if [ -s "$a.$i.txt" ] && [ -f "$b.$i.txt" ] && cmp -s "$a.$i.txt" "$b.$i.txt"; then :; else
      same=1
      echo "$label: prompt $i: reference \"$(cat "$a.$i.txt" 2>/dev/null)\" got \"$(cat "$b.$i.txt" 2>/dev/null)\" $(cat "$b.$i.err" "$a.$i.err" 2>/dev/null)"
    fi
  done
  return $same
}
