#!/usr/bin/env bash
# Cross-node request tracing on loopback: `strait run -n 2 --trace-sample 1`
# (the scheduler) and two `strait join` nodes holding fixed halves of the
# model. After one streamed chat request, GET /debug/trace?request_id=ID on
# the scheduler (polled until the nodes' shipments arrived, with a deadline)
# must hold spans of 3 processes (scheduler + both nodes, each node named by
# process_name metadata that carries its clock offset); each node's stage
# spans, on the scheduler's clock, must lie within the request's
# [received, finished] window widened by the reported uncertainty; every
# duration is >= 0; and /cluster/status reports every node's clock offset.
#   test_trace_cluster.sh path/to/strait
# Skips (77) when the default model is not cached, or curl/python3 is missing.
set -uo pipefail
STRAIT=${1:?usage: test_trace_cluster.sh path/to/strait}
HERE=$(cd "$(dirname "$0")" && pwd)
MODEL=${ST_TEST_MODEL:-$("$STRAIT" models path 2>/dev/null | head -1)}
[ -f "$MODEL" ] || MODEL=${STRAIT_HOME:-$HOME/.cache/strait}/models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$MODEL" ] || { echo "SKIP: the default model is not cached ($MODEL; run: strait models pull)"; exit 77; }
command -v curl >/dev/null || { echo "SKIP: curl is not installed"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 is not installed"; exit 77; }
"$STRAIT" run --help 2>/dev/null | grep -q -- '--nodes' ||
  { echo "SKIP: this strait run has no --nodes (no cluster scheduler)"; exit 77; }

. "$HERE/../lib.sh" # $TMP, PIDS killed on exit
. "$HERE/cluster_lib.sh"

N_LAYERS=$(model_layers) || exit 1
CUT=$((N_LAYERS / 2))

start_cluster tnode --trace-sample 1

PORT=$PORT python3 - <<'PYEOF'
import http.client, json, os, sys, time

port = int(os.environ["PORT"])
fails = []

def check(cond, what):
    if not cond:
        fails.append(what)
        print("FAIL", what)

def get(path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body

# one streamed chat request
c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
c.request("POST", "/v1/chat/completions", headers={"Content-Type": "application/json"}, body=json.dumps(
    {"messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 6, "temperature": 0,
     "stream": True}))
r = c.getresponse()
rid = r.getheader("X-Request-Id")
body = r.read().decode()
c.close()
check(r.status == 200, "chat status %d" % r.status)
check("data: [DONE]" in body, "the stream ends with [DONE]: %r" % body[-200:])
check(rid is not None and rid.isdigit(), "X-Request-Id header: %r" % rid)
if fails:
    sys.exit(1)

# the nodes ship every ~200 ms: poll until both nodes' stage spans are in (a deadline, not a sleep)
deadline = time.time() + 30
doc = None
while time.time() < deadline:
    st, b = get("/debug/trace?request_id=%s" % rid)
    if st == 200:
        doc = json.loads(b)
        evs = [e for e in doc["traceEvents"] if e.get("ph") != "M"]
        node_pids = {e["pid"] for e in evs if e["name"] == "stage_compute" and e["args"].get("stage", 0) != 0}
        if len({e["pid"] for e in evs}) >= 3 and len(node_pids) >= 2:
            break
    time.sleep(0.2)
check(doc is not None, "/debug/trace answered for request %s" % rid)
if doc is None:
    sys.exit(1)
meta = [e for e in doc["traceEvents"] if e.get("ph") == "M"]
evs = [e for e in doc["traceEvents"] if e.get("ph") != "M"]
names = {e["pid"]: e["args"].get("name") for e in meta if e["name"] == "process_name"}
pids = {e["pid"] for e in evs}
check(len(pids) == 3, "spans of 3 processes (scheduler + 2 nodes): %s" % sorted(pids))
recv = [e for e in evs if e["name"] == "received"]
fin = [e for e in evs if e["name"] in ("finished", "aborted")]
check(len(recv) == 1 and len(fin) == 1, "one received and one finished: %d, %d" % (len(recv), len(fin)))
sched_pid = recv[0]["pid"] if recv else None
node_pids = sorted(p for p in pids if p != sched_pid)
for p in node_pids:
    check(names.get(p) in ("tnode1", "tnode2"), "node process %d is named after its node: %r" % (p, names.get(p)))
    m = [e for e in meta if e["name"] == "process_name" and e["pid"] == p]
    args = m[0]["args"] if m else {}
    check(isinstance(args.get("clock_offset_us"), (int, float)), "node %r: offset in metadata %r" % (names.get(p), args))
    unc = args.get("clock_uncertainty_us")
    check(isinstance(unc, (int, float)) and unc >= 0, "node %r: uncertainty in metadata %r" % (names.get(p), args))
    unc = unc if isinstance(unc, (int, float)) else 0
    stages = [e for e in evs if e["pid"] == p and e["name"] == "stage_compute"]
    check(len(stages) >= 2, "node %r: a stage span per step (prefill + decodes): %d" % (names.get(p), len(stages)))
    if recv and fin:
        lo, hi = recv[0]["ts"] - unc, fin[0]["ts"] + unc
        for e in stages:
            check(lo <= e["ts"] and e["ts"] + e["dur"] <= hi,
                  "node %r: stage span [%.3f, %.3f] us within the request's [%.3f, %.3f] (+-%.3f)" %
                  (names.get(p), e["ts"], e["ts"] + e["dur"], recv[0]["ts"], fin[0]["ts"], unc))
    check(any(e["name"] == "hop_recv" for e in evs if e["pid"] == p), "node %r: hop_recv spans" % names.get(p))
check({e["args"].get("stage") for e in evs if e["name"] == "stage_compute" and e["pid"] in node_pids} >= {0},
      "the first node's stage starts at layer 0")
for e in evs:
    if e.get("ph") == "X":
        check(isinstance(e.get("dur"), (int, float)) and e["dur"] >= 0, "non-negative dur: %r" % e)
ts = [e["ts"] for e in evs]
check(ts == sorted(ts), "events of all processes merged in time order")

# the whole-process export holds the nodes too
st, b = get("/debug/trace")
check(st == 200 and len({e["pid"] for e in json.loads(b)["traceEvents"] if e.get("ph") != "M"}) >= 3,
      "GET /debug/trace (everything) holds the nodes' spans")

# /cluster/status: every node's clock offset and its uncertainty
st, b = get("/cluster/status")
nodes = json.loads(b).get("nodes", [])
check(len(nodes) == 2, "two nodes in /cluster/status: %d" % len(nodes))
for n in nodes:
    off, unc = n.get("clock_offset_us"), n.get("clock_uncertainty_us")
    check(isinstance(off, (int, float)) and isinstance(unc, (int, float)) and unc >= 0,
          "node %s: clock_offset_us %r, clock_uncertainty_us %r" % (n.get("name"), off, unc))
    # one host, one CLOCK_MONOTONIC: the true offset is 0, so the estimate must be within its own bound
    if isinstance(off, (int, float)) and isinstance(unc, (int, float)):
        check(abs(off) <= unc + 1.0, "node %s on this host: |offset| %.3f us within the uncertainty %.3f us"
              % (n.get("name"), off, unc))
print("trace_cluster: %d processes, %d events, %d failures" % (len(pids), len(evs), len(fails)))
sys.exit(1 if fails else 0)
PYEOF
rc=$?
[ $rc = 0 ] || tail -5 "$TMP/sched.log" "$TMP/node1.log" "$TMP/node2.log"
kill -TERM $SCHED; wait $SCHED 2>/dev/null
exit $rc
