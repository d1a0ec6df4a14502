#!/usr/bin/env bash
# Serving throughput and latency of `strait run` beside llama.cpp's
# llama-server on the same GGUF, the same cores and the same load, one
# server at a time, both driven by `strait bench serve` (streaming
# completions, greedy, full output length):
#
#   bench/serve_compare.sh path/to/strait path/to/llama-server [CONCURRENCIES] [REQUESTS]
#
# CONCURRENCIES defaults to "1 4 16", REQUESTS (per concurrency) to 32.
# Environment: MODEL (default: the default model), THREADS (2), INPUT_LEN /
# OUTPUT_LEN (64 / 64). llama-server runs with --parallel 16 (continuous
# batching on) and a context of 16 x 1024. Prints a table with the ratios
# and one JSON line per server and concurrency. Compare ratios from one run.
set -u
STRAIT=$(readlink -f "${1:?usage: serve_compare.sh strait llama-server [CONCURRENCIES] [REQUESTS]}")
LLAMA=$(readlink -f "${2:?usage: serve_compare.sh strait llama-server [CONCURRENCIES] [REQUESTS]}")
CONCS=${3:-1 4 16}
NREQ=${4:-32}
THREADS=${THREADS:-2}
IN=${INPUT_LEN:-64}
OUT=${OUTPUT_LEN:-64}
MODEL=${MODEL:-$("$STRAIT" models path 2>/dev/null)}
[ -f "$MODEL" ] || { echo "no model (set MODEL or run: strait models pull)" >&2; exit 1; }
TMP=$(mktemp -d)
PID=
cleanup() {
  [ -n "$PID" ] && { kill -TERM "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; }
  rm -rf "$TMP"
}
trap cleanup EXIT
PORT=$((30000 + RANDOM % 20000))

wait_health() {
  for _ in $(seq 1200); do
    curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && return 0
    kill -0 "$PID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# run_server NAME CONC SEED command...: start it fresh (no cache left from an
# earlier load), load it at one concurrency, stop it
run_server() {
  local name=$1 c=$2 seed=$3
  shift 3
  "$@" >"$TMP/$name.log" 2>&1 &
  PID=$!
  wait_health || { echo "$name did not start:"; tail -20 "$TMP/$name.log"; exit 1; }
  "$STRAIT" bench serve --url "http://127.0.0.1:$PORT" --max-concurrency "$c" --num-requests "$NREQ" \
    --input-len "$IN" --output-len "$OUT" --seed "$seed" --json 2>/dev/null | grep '^{' | tail -1 \
    >"$TMP/$name.$c.json"
  kill -TERM "$PID"
  wait "$PID" 2>/dev/null
  PID=
}

seed=1
for c in $CONCS; do
  run_server strait "$c" "$seed" "$STRAIT" run -m "$MODEL" --host 127.0.0.1 --port "$PORT" -t "$THREADS"
  run_server llama "$c" "$seed" "$LLAMA" -m "$MODEL" --host 127.0.0.1 --port "$PORT" -t "$THREADS" --parallel 16 \
    -c 16384 -cb
  seed=$((seed + 1))
done

python3 - "$TMP" $CONCS <<'PY'
import json, sys
tmp, concs = sys.argv[1], sys.argv[2:]
def load(n, c):
    try:
        return json.load(open(f"{tmp}/{n}.{c}.json"))
    except Exception:
        return None
def pick(d, *keys):
    for k in keys:
        if d is None:
            return None
        d = d.get(k)
    return d
print(f"{'conc':>4} {'strait tok/s':>13} {'llama tok/s':>12} {'ratio':>6} {'TTFT p50 s/l ms':>18} {'TTFT p99 s/l ms':>18} {'p99 ratio':>9}")
for c in concs:
    s, l = load("strait", c), load("llama", c)
    st, lt = pick(s, "output_tok_s"), pick(l, "output_tok_s")
    s50, l50 = pick(s, "ttft_ms", "p50"), pick(l, "ttft_ms", "p50")
    s99, l99 = pick(s, "ttft_ms", "p99"), pick(l, "ttft_ms", "p99")
    fmt = lambda x: "-" if x is None else f"{x:.1f}"
    ratio = f"{st / lt:.2f}" if st and lt else "-"
    r99 = f"{s99 / l99:.2f}" if s99 and l99 else "-"
    print(f"{c:>4} {fmt(st):>13} {fmt(lt):>12} {ratio:>6} {fmt(s50) + ' / ' + fmt(l50):>18} {fmt(s99) + ' / ' + fmt(l99):>18} {r99:>9}")
    for n, d in (("strait", s), ("llama-server", l)):
        print(json.dumps({"bench": "serve_compare", "server": n, "concurrency": int(c), "result": d}))
PY
