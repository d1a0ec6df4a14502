#!/usr/bin/env bash
# `strait bench serve` against a live `strait run`: option errors name the
# option (exit 2), an unreachable server is exit 1, and real runs (fixed
# concurrency, Poisson arrivals on the chat endpoint, a dataset) complete
# with zero errors; the benchmark's token counts agree with what was asked
# (ignore_eos: every request yields --output-len tokens) and with the
# server's own /metrics counters; a wrong API key is reported as failures.
#   test_serve_load.sh path/to/strait
# Skips (77) when the default model is not cached or python3 is missing.
set -uo pipefail
STRAIT=${1:?usage: test_serve_load.sh path/to/strait}
MODEL=${ST_TEST_MODEL:-${STRAIT_HOME:-$HOME/.cache/strait}/models/SmolLM2-135M-Instruct.Q4_1.gguf}
command -v python3 >/dev/null || { echo "SKIP: python3 is needed to read the JSON lines"; exit 77; }
command -v curl >/dev/null || { echo "SKIP: curl is not installed"; exit 77; }
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

check() { # check NAME EXPECTED_EXIT PATTERN -- command...
  local name=$1 want=$2 pat=$3
  shift 4
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [ "$rc" != "$want" ]; then
    bad "$name: exit $rc, want $want; output: ${out:0:400}"
  elif [ -n "$pat" ] && ! grep -qE -- "$pat" <<<"$out"; then
    bad "$name: output lacks /$pat/: ${out:0:400}"
  else ok; fi
}

B=("$STRAIT" bench serve)
if grep -q "unknown benchmark" <<<"$("${B[@]}" --help 2>&1)"; then
  echo "SKIP: this strait has no 'bench serve' (st_bench_serve_main is not wired into tools/bench_cmd.c)"
  exit 77
fi
# ---- options (no server needed) --------------------------------------------------
check help 0 'request-rate' -- "${B[@]}" --help
check conc-zero 2 "invalid value '0' for --max-concurrency" -- "${B[@]}" --max-concurrency 0
check rate-neg 2 "invalid value '-1' for --request-rate" -- "${B[@]}" --request-rate -1
check rate-word 2 "invalid value 'fast' for --request-rate" -- "${B[@]}" --request-rate fast
check input-len 2 "invalid value '12x' for --input-len" -- "${B[@]}" --input-len 12x
check output-len 2 "invalid value '0' for --output-len" -- "${B[@]}" --output-len=0
check num-req 2 "invalid value '' for --num-requests" -- "${B[@]}" --num-requests ''
check url-scheme 2 "invalid value 'ftp://x' for --url" -- "${B[@]}" --url ftp://x
check url-port 2 "invalid value 'http://h:99999' for --url" -- "${B[@]}" --url http://h:99999
check endpoint 2 "invalid value 'embed' for --endpoint" -- "${B[@]}" --endpoint embed
check temperature 2 "invalid value '3' for --temperature" -- "${B[@]}" --temperature 3
check unknown 2 "unknown option '--bogus'" -- "${B[@]}" --bogus 1
check missing 2 "'--seed' needs a value" -- "${B[@]}" --seed
check extra 2 "unexpected argument 'extra'" -- "${B[@]}" extra
check no-server 1 "cannot (connect|list)" -- "${B[@]}" --url http://127.0.0.1:1 --num-requests 2 --warmup 0 --model m
printf '"one"\n42\n' >"$TMP/bad.jsonl"
check bad-dataset 2 "bad.jsonl:2" -- "${B[@]}" --url http://127.0.0.1:1 --model m --dataset "$TMP/bad.jsonl"

if [ ! -f "$MODEL" ]; then
  echo "SKIP (the rest): the default model is not cached ($MODEL)"
  echo "test_serve_load: $pass passed, $fail failed"
  [ $fail = 0 ] && exit 77
  exit 1
fi

# ---- a live server -------------------------------------------------------------------
KEY=load-key-$$
"$STRAIT" run -m "$MODEL" --host 127.0.0.1 --port 0 --kv-cache-memory 268435456 --ctx 2048 --api-key "$KEY" \
  >"$TMP/server.log" 2>&1 &
SRV=$!
PORT=$(api_port "$TMP/server.log" $SRV)
[ -n "$PORT" ] || { echo "FAIL: strait run did not start:"; cat "$TMP/server.log"; exit 1; }
U=http://127.0.0.1:$PORT
for _ in $(seq 300); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$U/health")" = 200 ] && break
  sleep 0.1
done

metric() { # metric NAME -> value from /metrics
  curl -s -H "Authorization: Bearer $KEY" "$U/metrics" | awk -v n="$1" '$1 == n { print $2 }'
}
jcheck() { # jcheck NAME FILE PYTHON-EXPR over the JSON line as j
  if python3 - "$2" "$3" <<'EOF'; then ok; else bad "$1: $(tail -n1 "$2" | head -c 600)"; fi
import json, sys
lines = [l for l in open(sys.argv[1]) if l.startswith("{")]
j = json.loads(lines[-1])
ok = eval(sys.argv[2], {"j": j})
if not ok:
    print("  failed:", sys.argv[2])
sys.exit(0 if ok else 1)
EOF
}

# 1. fixed concurrency; every request yields exactly --output-len tokens
gen0=$(metric strait_generation_tokens_total)
len0=$(metric 'strait_request_success_total{finished_reason="length"}')
"${B[@]}" --url "$U" --api-key "$KEY" --num-requests 24 --max-concurrency 8 --input-len 32 --output-len 16 \
  --warmup 1 --json >"$TMP/r1.txt" 2>&1
rc=$?
[ $rc = 0 ] && ok || bad "concurrency run exit $rc: $(tail -n 5 "$TMP/r1.txt")"
jcheck "concurrency run counts" "$TMP/r1.txt" \
  'j["completed"] == 24 and j["errors"] == 0 and j["output_tokens"] == 24 * 16 and 32 * 24 <= j["prompt_tokens"] <= 34 * 24'
jcheck "concurrency run latencies" "$TMP/r1.txt" \
  'all(0 < j[m]["p50"] <= j[m]["p90"] <= j[m]["p99"] for m in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms")) and j["e2e_ms"]["mean"] > j["ttft_ms"]["mean"]'
jcheck "concurrency run rates" "$TMP/r1.txt" \
  'abs(j["request_throughput"] * j["duration_s"] - 24) < 0.01 and abs(j["output_tok_s"] * j["duration_s"] - 384) < 0.5'
gen1=$(metric strait_generation_tokens_total)
len1=$(metric 'strait_request_success_total{finished_reason="length"}')
# the warm-up request counts on the server too
if [ $((gen1 - gen0)) = $((25 * 16)) ] && [ $((len1 - len0)) = 25 ]; then ok; else
  bad "server counted $((gen1 - gen0)) generated tokens in $((len1 - len0)) length-finished requests, want 400 in 25"
fi

# 2. Poisson arrivals on the chat endpoint
"${B[@]}" --url "$U" --api-key "$KEY" --endpoint chat --num-requests 12 --request-rate 6 --input-len 16 \
  --output-len 8 --seed 3 --json >"$TMP/r2.txt" 2>&1
rc=$?
[ $rc = 0 ] && ok || bad "poisson run exit $rc: $(tail -n 5 "$TMP/r2.txt")"
jcheck "poisson run" "$TMP/r2.txt" \
  'j["completed"] == 12 and j["errors"] == 0 and j["output_tokens"] == 96 and j["endpoint"] == "chat" and j["request_rate"] == 6'

# 3. a dataset of prompts, cycled
printf '"The sea was calm"\n\n"Write about \\"stars\\" \\u00e9"\n"One two three"\n' >"$TMP/prompts.jsonl"
"${B[@]}" --url "$U" --api-key "$KEY" --dataset "$TMP/prompts.jsonl" --num-requests 6 --max-concurrency 3 \
  --output-len 4 --json >"$TMP/r3.txt" 2>&1
rc=$?
[ $rc = 0 ] && ok || bad "dataset run exit $rc: $(tail -n 5 "$TMP/r3.txt")"
jcheck "dataset run" "$TMP/r3.txt" 'j["completed"] == 6 and j["output_tokens"] == 24 and j["prompt_tokens"] < 6 * 16'

# 4. a wrong API key: every request fails, the run says so and exits 1
check wrong-key 1 "HTTP 401" -- "${B[@]}" --url "$U" --api-key wrong --model m --warmup 0 --num-requests 3
check wrong-key-warmup 1 "warm-up request failed: HTTP 401" -- "${B[@]}" --url "$U" --api-key wrong --model m

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
  [ $rc = 0 ] && ok || bad "strait run exited $rc after SIGTERM"
fi

echo "test_serve_load: $pass passed, $fail failed"
[ $fail = 0 ]
