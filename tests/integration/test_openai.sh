#!/usr/bin/env bash
# End-to-end test of `strait run` with real clients: the official `openai`
# Python package (openai_client.py: chat, completions, streaming with usage,
# stop strings, max_tokens, logprobs, 16 concurrent streams), curl over
# HTTP/2 (prior knowledge) and HTTP/1.1, h2load runs of small requests with
# zero errors, a table of bad requests (status + OpenAI error object), and a
# graceful SIGTERM.
#   test_openai.sh path/to/strait
# Skips (77) when the default model is not cached, when the `openai` package
# cannot be imported, or when curl/h2load are missing. Python: $ST_TEST_PYTHON,
# else BUILD_DIR/pyenv/bin/python3 (a venv next to the binary) if present,
# else python3.
set -uo pipefail
STRAIT=${1:?usage: test_openai.sh path/to/strait}
HERE=$(cd "$(dirname "$0")" && pwd)
MODEL=${ST_TEST_MODEL:-${STRAIT_HOME:-$HOME/.cache/strait}/models/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -f "$MODEL" ] || { echo "SKIP: the default model is not cached ($MODEL; run: strait models pull)"; exit 77; }
PY=${ST_TEST_PYTHON:-}
if [ -z "$PY" ]; then
  PY=python3
  [ -x "$(dirname "$STRAIT")/pyenv/bin/python3" ] && PY="$(dirname "$STRAIT")/pyenv/bin/python3"
fi
"$PY" -c 'import openai' 2>/dev/null || {
  echo "SKIP: $PY cannot import the openai package (python3 -m venv BUILD/pyenv && BUILD/pyenv/bin/pip install openai)"
  exit 77
}
for tool in curl h2load; do
  command -v $tool >/dev/null || { echo "SKIP: $tool is not installed (apt-get install curl nghttp2-client)"; exit 77; }
done

TMP=$(mktemp -d)
. "$(dirname "$0")/../lib_wait.sh" # wait_log, api_port
SRV=
cleanup() {
  [ -n "$SRV" ] && kill -KILL "$SRV" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
fail=0
pass=0
ok() { pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }

KEY=test-key-$$
AUTH="Authorization: Bearer $KEY"
# A small KV cache and context keep start-up quick; a small body limit makes
# the 413 case cheap.
"$STRAIT" run -m "$MODEL" --host 127.0.0.1 --port 0 --kv-cache-memory 268435456 --ctx 2048 \
  --api-key "$KEY" --max-body-bytes 65536 >"$TMP/server.log" 2>&1 &
SRV=$!
PORT=$(api_port "$TMP/server.log" $SRV)
if [ -z "$PORT" ]; then
  echo "FAIL: strait run did not start listening:"
  cat "$TMP/server.log"
  exit 1
fi
U=http://127.0.0.1:$PORT
for _ in $(seq 300); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$U/health")" = 200 ] && break
  sleep 0.1
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "$U/health")" = 200 ] || { echo "FAIL: /health never answered 200"; exit 1; }

# ---- the openai client ----------------------------------------------------------
if timeout 150 "$PY" "$HERE/openai_client.py" "$U" "$KEY" "$STRAIT"; then ok; else bad "openai client checks"; fi

# ---- curl over HTTP/2 (prior knowledge) and HTTP/1.1 -------------------------------
CHAT='{"model":"m","messages":[{"role":"user","content":"Hi"}],"max_tokens":4,"temperature":0}'
STREAM='{"model":"m","prompt":"Hello","max_tokens":4,"stream":true}'
for proto in --http2-prior-knowledge --http1.1; do
  want=$([ $proto = --http1.1 ] && echo 1.1 || echo 2)
  got=$(curl -s $proto -H "$AUTH" -H 'Content-Type: application/json' -d "$CHAT" -o "$TMP/c.json" \
    -w '%{http_code} %{http_version}' "$U/v1/chat/completions")
  if [ "$got" = "200 $want" ] && "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["choices"][0]["message"]["content"]' "$TMP/c.json"; then
    ok
  else bad "curl $proto chat: '$got' $(head -c 300 "$TMP/c.json")"; fi
  got=$(curl -sN $proto -H "$AUTH" -d "$STREAM" -o "$TMP/s.txt" -w '%{http_code} %{http_version}' "$U/v1/completions")
  n_data=$(grep -c '^data: {' "$TMP/s.txt")
  if [ "$got" = "200 $want" ] && [ "$(grep '^data: ' "$TMP/s.txt" | tail -n1)" = "data: [DONE]" ] && [ "$n_data" -ge 2 ]; then
    ok
  else bad "curl $proto stream: '$got', $n_data events: $(head -c 300 "$TMP/s.txt")"; fi
done

# ---- h2load: thousands of small requests, zero errors -------------------------------
h2check() { # h2check NAME N h2load-args...
  local name=$1 n=$2
  shift 2
  local out
  out=$(timeout 120 h2load "$@" 2>&1)
  if grep -q "requests: $n total, $n started, $n done, $n succeeded, 0 failed, 0 errored" <<<"$out" &&
    grep -q "status codes: $n 2xx, 0 3xx, 0 4xx, 0 5xx" <<<"$out"; then
    ok
  else bad "h2load $name: $(grep -E '^(requests|status codes):' <<<"$out" | tr '\n' ' ') $(tail -n 3 <<<"$out")"; fi
}
h2check "h2 /health" 2000 -n 2000 -c 8 -m 4 "$U/health"
h2check "h1 /health" 1000 --h1 -n 1000 -c 8 "$U/health"
printf '{"model":"m","prompt":"Hi","max_tokens":1}' >"$TMP/tiny.json"
h2check "h2 tiny completions" 200 -n 200 -c 8 -m 2 -d "$TMP/tiny.json" -H 'content-type: application/json' \
  -H "authorization: Bearer $KEY" "$U/v1/completions"

# ---- bad requests: status and error object ------------------------------------------
"$PY" - "$TMP" <<'EOF'
import json, sys
t = sys.argv[1]
body = lambda name, d: open(f"{t}/{name}.json", "w").write(json.dumps(d))
msgs = [{"role": "user", "content": "hi"}]
body("n2", {"model": "m", "messages": msgs, "n": 2})
body("maxtok", {"model": "m", "messages": msgs, "max_tokens": 10**12})
body("negtok", {"model": "m", "messages": msgs, "max_tokens": -1})
body("nomsgs", {"model": "m"})
body("role", {"model": "m", "messages": [{"role": "wizard", "content": "hi"}]})
body("temp", {"model": "m", "messages": msgs, "temperature": "hot"})
body("toolong", {"model": "m", "prompt": [100] * 3000})
body("badid", {"model": "m", "prompt": [1, 99999999]})
body("big", {"model": "m", "prompt": "x" * 100000})
open(f"{t}/utf8.json", "wb").write(b'{"model":"m","messages":[{"role":"user","content":"\xff\xfe bad"}]}')
EOF
printf '%-18s %-6s %-24s %-12s %s\n' case status type param message
badreq() { # badreq NAME STATUS PARAM(or -) curl-args...
  local name=$1 want=$2 param=$3
  shift 3
  local got
  got=$(curl -s -o "$TMP/err.json" -w '%{http_code}' "$@")
  local shape
  shape=$("$PY" - "$TMP/err.json" <<'EOF'
import json, sys
try:
    e = json.load(open(sys.argv[1]))["error"]
    assert isinstance(e["message"], str) and e["message"] and isinstance(e["type"], str) and e["type"]
    assert "param" in e and "code" in e
    print(e["type"], e["param"] if e["param"] is not None else "-", e["message"][:70].replace("\n", " "), sep="\t")
except Exception as x:
    print("BAD-SHAPE", "-", repr(x)[:70], sep="\t")
EOF
  )
  IFS=$'\t' read -r typ par msg <<<"$shape"
  printf '%-18s %-6s %-24s %-12s %s\n' "$name" "$got" "$typ" "$par" "$msg"
  if [ "$got" != "$want" ] || [ "$typ" = BAD-SHAPE ] || { [ "$param" != - ] && [ "$par" != "$param" ]; }; then
    bad "bad request $name: status $got (want $want), param $par (want $param): $(head -c 300 "$TMP/err.json")"
  else ok; fi
}
J=(-H "$AUTH" -H 'Content-Type: application/json')
badreq malformed-json 400 - "${J[@]}" -d '{"model":' "$U/v1/chat/completions"
badreq empty-body 400 - "${J[@]}" -X POST "$U/v1/chat/completions"
badreq n=2 400 n "${J[@]}" -d @"$TMP/n2.json" "$U/v1/chat/completions"
badreq invalid-utf8 400 - "${J[@]}" --data-binary @"$TMP/utf8.json" "$U/v1/chat/completions"
badreq absurd-max-tokens 400 max_tokens "${J[@]}" -d @"$TMP/maxtok.json" "$U/v1/chat/completions"
badreq negative-max-tok 400 max_tokens "${J[@]}" -d @"$TMP/negtok.json" "$U/v1/chat/completions"
badreq no-messages 400 messages "${J[@]}" -d @"$TMP/nomsgs.json" "$U/v1/chat/completions"
badreq unknown-role 400 - "${J[@]}" -d @"$TMP/role.json" "$U/v1/chat/completions"
badreq temperature-str 400 temperature "${J[@]}" -d @"$TMP/temp.json" "$U/v1/chat/completions"
badreq prompt-over-ctx 400 prompt "${J[@]}" -d @"$TMP/toolong.json" "$U/v1/completions"
badreq bad-token-id 400 - "${J[@]}" -d @"$TMP/badid.json" "$U/v1/completions"
badreq body-too-large 413 - "${J[@]}" -d @"$TMP/big.json" "$U/v1/completions"
badreq no-api-key 401 - -H 'Content-Type: application/json' -d "$CHAT" "$U/v1/chat/completions"
badreq wrong-api-key 401 - -H 'Authorization: Bearer wrong' -d "$CHAT" "$U/v1/chat/completions"
badreq unknown-route 404 - -H "$AUTH" "$U/v1/nothing"
badreq wrong-method 405 - -H "$AUTH" "$U/v1/completions"
badreq h2-malformed 400 - --http2-prior-knowledge "${J[@]}" -d '[1,2' "$U/v1/completions"

# still serving
got=$(curl -s -H "$AUTH" -d "$CHAT" -o "$TMP/c.json" -w '%{http_code}' "$U/v1/chat/completions")
h=$(curl -s -o /dev/null -w '%{http_code}' "$U/health")
if [ "$got" = 200 ] && [ "$h" = 200 ]; then ok; else bad "after the bad requests: chat $got, health $h"; fi

# ---- graceful SIGTERM: exit 0 within a bounded time -----------------------------------
kill -TERM "$SRV"
for _ in $(seq 200); do
  kill -0 "$SRV" 2>/dev/null || break
  sleep 0.05
done
if kill -0 "$SRV" 2>/dev/null; then
  bad "strait run still running 10 s after SIGTERM"
else
  wait "$SRV"
  rc=$?
  SRV=
  if [ $rc = 0 ]; then ok; else bad "strait run exited $rc after SIGTERM: $(tail -n 5 "$TMP/server.log")"; fi
fi

echo "test_openai: $pass passed, $fail failed"
[ $fail = 0 ]
