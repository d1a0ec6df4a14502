#!/usr/bin/env bash
# End-to-end test of request tracing in `strait run` (tracing switched on by
# STRAIT_TRACE_SAMPLE / STRAIT_TRACE_FILE, the environment twins of
# --trace-sample / --trace-file):
#   - a chat request's response carries X-Request-Id; GET /debug/trace for
#     it is Chrome trace JSON whose events have the required fields, every
#     expected span kind in order, non-negative durations, and nothing of
#     other requests;
#   - a streamed request whose client leaves after the first token has a
#     trace that ends in "aborted";
#   - /debug/trace needs the API key, answers 404 for an unknown id and 400
#     for a malformed one; /metrics carries the breakdown histograms;
#   - `strait bench serve --trace --report` against it: the overhead JSON
#     line, the kept trace, and (when /usr/bin/chromium and python's
#     websocket are there) the HTML report rendered by tests/http/trace_e2e.py,
#     screenshot in $ST_BINARY_DIR/trace-report/ (else a temp dir);
#   - on SIGTERM the trace file is a complete Chrome trace of both requests.
#   test_trace.sh path/to/strait
# Skips (77) when the default model is not cached.
set -uo pipefail
STRAIT=${1:?usage: test_trace.sh path/to/strait}
MODEL=${ST_TEST_MODEL:-${STRAIT_HOME:-$HOME/.cache/strait}/models/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -f "$MODEL" ] || { echo "SKIP: the default model is not cached ($MODEL; run: strait models pull)"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 is not installed"; exit 77; }

TMP=$(mktemp -d)
. "$(dirname "$0")/../lib_wait.sh" # wait_log, api_port
SRV=
cleanup() {
  [ -n "$SRV" ] && kill -KILL "$SRV" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT

KEY=trace-key-$$
STRAIT_TRACE_SAMPLE=1 STRAIT_TRACE_FILE="$TMP/all.json" "$STRAIT" run -m "$MODEL" --host 127.0.0.1 --port 0 \
  --kv-cache-memory 268435456 --ctx 2048 --api-key "$KEY" --shutdown-grace-ms 0 >"$TMP/server.log" 2>&1 &
SRV=$!
PORT=$(api_port "$TMP/server.log" $SRV)
if [ -z "$PORT" ]; then
  echo "FAIL: strait run did not start listening:"
  cat "$TMP/server.log"
  exit 1
fi

PORT=$PORT KEY=$KEY IDS_FILE="$TMP/ids" python3 - <<'EOF'
import http.client, json, os, sys, time

port, key = int(os.environ["PORT"]), os.environ["KEY"]
auth = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
fails = []

def check(cond, what):
    if not cond:
        fails.append(what)
        print("FAIL", what)

def get(path, headers=auth):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("GET", path, headers=headers)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body

def events_of(doc):
    check(isinstance(doc.get("traceEvents"), list), "traceEvents is a list")
    evs = doc.get("traceEvents", [])
    for e in evs:
        for f in ("name", "ph", "pid", "tid"):
            check(f in e, "event has %s: %r" % (f, e))
        if e.get("ph") == "M":
            continue
        check(e.get("ph") in ("X", "i"), "ph X or i: %r" % e)
        check(isinstance(e.get("ts"), (int, float)) and e["ts"] >= 0, "ts: %r" % e)
        check(isinstance(e.get("args"), dict), "args: %r" % e)
        if e.get("ph") == "X":
            check(isinstance(e.get("dur"), (int, float)) and e["dur"] >= 0, "non-negative dur: %r" % e)
    return [e for e in evs if e.get("ph") != "M"]

# 1. a chat request and its trace
c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
c.request("POST", "/v1/chat/completions", headers=auth, body=json.dumps(
    {"messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 4, "temperature": 0}))
r = c.getresponse()
r.read()
check(r.status == 200, "chat status %d" % r.status)
rid = r.getheader("X-Request-Id")
check(rid is not None and rid.isdigit(), "X-Request-Id header: %r" % rid)
c.close()
st, body = get("/debug/trace?request_id=%s" % rid)
check(st == 200, "/debug/trace status %d: %s" % (st, body[:200]))
evs = events_of(json.loads(body))
names = [e["name"] for e in evs]
want = ["received", "parsed", "templated", "tokenized", "queued", "admitted", "prefill", "decode", "sampled",
        "detokenized", "finished"]
k = 0
for n in names:
    if k < len(want) and n == want[k]:
        k += 1
check(k == len(want), "spans in order: got %s, stopped before %s" % (names, want[k] if k < len(want) else "-"))
check("written" in names and names.index("written") > names.index("detokenized"), "written after detokenized")
ts = [e["ts"] for e in evs]
check(ts == sorted(ts), "events sorted by time")
check(all(e["args"].get("request_id", int(rid)) == int(rid) for e in evs), "only this request's records")
steps = {e["args"]["step"] for e in evs if e["name"] in ("prefill", "decode")}
check(steps and all(e["args"].get("step") in steps for e in evs if e["name"] == "step"), "step records of its steps")
check(sum(n == "decode" for n in names) == 3, "3 decode steps for 4 tokens: %d" % sum(n == "decode" for n in names))
fin = [e for e in evs if e["name"] == "finished"]
check(fin and fin[0]["args"].get("reason") == "length", "finished with reason length: %r" % fin)

# 2. a streamed request abandoned after its first token
c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
c.request("POST", "/v1/chat/completions", headers=auth, body=json.dumps(
    {"messages": [{"role": "user", "content": "Count to one hundred."}], "max_tokens": 500, "temperature": 0,
     "ignore_eos": True, "stream": True}))
r = c.getresponse()
rid2 = r.getheader("X-Request-Id")
check(rid2 is not None and rid2 != rid, "second request id %r" % rid2)
buf = b""
while b'"content"' not in buf:
    chunk = r.fp.readline()
    if not chunk:
        break
    buf += chunk
c.sock.close()  # the client leaves: the server aborts the generation
c.close()
last = None
for _ in range(600):  # the abort lands at the batcher's next step
    st, body = get("/debug/trace?request_id=%s" % rid2)
    evs2 = events_of(json.loads(body)) if st == 200 else []
    last = evs2[-1]["name"] if evs2 else None
    if last == "aborted":
        break
    time.sleep(0.1)
check(last == "aborted", "aborted request's trace ends in aborted (last: %s)" % last)

# 3. errors and metrics
st, _ = get("/debug/trace?request_id=%s" % rid, headers={})
check(st == 401, "/debug/trace without the key: %d" % st)
st, _ = get("/debug/trace?request_id=987654321")
check(st == 404, "/debug/trace for an unknown id: %d" % st)
st, _ = get("/debug/trace?request_id=12x")
check(st == 400, "/debug/trace for a malformed id: %d" % st)
st, body = get("/metrics")
text = body.decode()
for name in ("strait_queue_seconds_count", "strait_prefill_step_seconds_count", "strait_decode_step_seconds_count"):
    line = [l for l in text.splitlines() if l.startswith(name)]
    check(line and float(line[0].split()[-1]) >= 1, "/metrics %s >= 1: %r" % (name, line))
open(os.environ["IDS_FILE"], "w").write("%s %s\n" % (rid, rid2))
sys.exit(1 if fails else 0)
EOF
rc=$?
[ $rc -eq 0 ] || { echo "FAIL: trace checks"; tail -20 "$TMP/server.log"; exit 1; }
IDS=$(cat "$TMP/ids")

# the overhead benchmark and the report
"$STRAIT" bench serve --url "http://127.0.0.1:$PORT" --api-key "$KEY" --num-requests 4 --max-concurrency 2 \
  --input-len 16 --output-len 8 --warmup 0 --seed 7 --trace --trace-out "$TMP/bench-trace.json" \
  --report "$TMP/report.html" --json >"$TMP/bench.out" 2>&1 || {
  echo "FAIL: bench serve --trace"; cat "$TMP/bench.out"; echo "server log:"; tail -30 "$TMP/server.log"; exit 1; }
python3 - "$TMP/bench.out" "$TMP/bench-trace.json" <<'EOF'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
ov = [l for l in lines if l.get("bench") == "serve_trace_overhead"]
assert len(ov) == 1 and ov[0]["ratio"] > 0, "one overhead line with a ratio: %r" % lines
runs = sorted(l["trace_sample"] for l in lines if l.get("bench") == "serve")
assert runs == [0, 1], "a run at sample 0 and one at 1: %r" % runs
names = {e["name"] for e in json.load(open(sys.argv[2]))["traceEvents"]}
assert {"queued", "prefill", "decode", "step"} <= names, names
print("bench: trace overhead ratio %.3f (a noisy machine: a benchmark, not a check)" % ov[0]["ratio"])
EOF
[ $? -eq 0 ] || { echo "FAIL: bench serve --trace output"; cat "$TMP/bench.out"; exit 1; }
PY=${ST_TEST_PYTHON:-python3}
[ -x "$(dirname "$STRAIT")/pyenv/bin/python3" ] && [ -z "${ST_TEST_PYTHON:-}" ] && PY="$(dirname "$STRAIT")/pyenv/bin/python3"
if [ -x "${ST_CHROMIUM:-/usr/bin/chromium}" ] && "$PY" -c 'import websocket' 2>/dev/null; then
  if [ -n "${ST_BINARY_DIR:-}" ]; then SHOTS=$ST_BINARY_DIR/trace-report; else SHOTS=$(mktemp -d /tmp/strait-trace-report.XXXXXX); fi
  mkdir -p "$SHOTS"
  cp "$TMP/report.html" "$SHOTS/report.html"
  "$PY" "$(dirname "$0")/../http/trace_e2e.py" "$SHOTS/report.html" "$SHOTS" --expect-trace ||
    { echo "FAIL: the report in chromium"; exit 1; }
else
  echo "note: chromium or python websocket missing: the report's rendering is not checked"
fi

kill -TERM "$SRV"
wait "$SRV"
SRV=
IDS=$IDS python3 - "$TMP/all.json" <<'EOF'
import json, os, sys
doc = json.load(open(sys.argv[1]))
evs = sorted(doc["traceEvents"], key=lambda e: e.get("ts", 0))
ids = [int(x) for x in os.environ["IDS"].split()]
for rid in ids:
    mine = [e["name"] for e in evs if e.get("args", {}).get("request_id") == rid]
    assert "received" in mine and "queued" in mine, "request %d in the file: %s" % (rid, mine)
    assert mine[-1] in ("finished", "aborted", "written"), mine
assert any(e["ph"] == "M" and e["name"] == "thread_name" for e in evs), "thread names"
print("trace file: %d events" % len(evs))
EOF
[ $? -eq 0 ] || { echo "FAIL: trace file"; exit 1; }
echo "PASS test_trace"
