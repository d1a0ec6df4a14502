#!/usr/bin/env bash
# `strait run`'s batching and KV flags reach the batcher, seen from outside
# through GET /metrics of a live server on the default model:
#   --kv-cache-memory BYTES   -> exactly floor(BYTES / block bytes) KV blocks
#   --kv-cache-fraction F     -> about F of MemAvailable
#   --disable-prefix-cache    -> a repeated prompt gets no prefix-cache hit
#                                (and without it, it does)
#   --max-batch-size 4        -> 8 concurrent requests never run 5 at a time
#   --max-num-tokens-per-batch 64 -> a 300-token prompt takes >= 5 steps
# plus the flag errors (exit 2, naming the flag).
#   test_run_flags.sh path/to/strait
# Skips (77) when the default model is not cached or curl/python3 are missing.
set -uo pipefail
STRAIT=${1:?usage: test_run_flags.sh path/to/strait}
HERE=$(cd "$(dirname "$0")" && pwd)
MODEL=${ST_TEST_MODEL:-${STRAIT_HOME:-$HOME/.cache/strait}/models/SmolLM2-135M-Instruct.Q4_1.gguf}
for tool in curl python3; do
  command -v $tool >/dev/null || { echo "SKIP: $tool is not installed"; exit 77; }
done
source "$HERE/../lib.sh"

check_usage() { # check_usage NAME PATTERN -- args...: exit 2 and a message matching PATTERN
  local name=$1 pat=$2
  shift 3
  local out rc
  out=$("$STRAIT" run "$@" 2>&1)
  rc=$?
  if [ $rc = 2 ] && grep -qE -- "$pat" <<<"$out"; then ok; else bad "$name: exit $rc: ${out:0:300}"; fi
}
check_usage frac-zero "kv-cache-fraction" -- --kv-cache-fraction 0
check_usage frac-big "invalid value '1.5' for --kv-cache-fraction" -- --kv-cache-fraction 1.5
check_usage frac-word "invalid value 'half' for --kv-cache-fraction" -- --kv-cache-fraction half
check_usage mem-zero "kv-cache-memory must be a positive" -- --kv-cache-memory 0
check_usage both "exclude each other" -- --kv-cache-memory 1000000 --kv-cache-fraction 0.1
check_usage batch-zero "invalid value '0' for --max-batch-size" -- --max-batch-size 0

if [ ! -f "$MODEL" ]; then
  echo "SKIP (the rest): the default model is not cached ($MODEL)"
  echo "test_run_flags: $pass passed, $fail failed"
  [ $fail = 0 ] && exit 77
  exit 1
fi

# Bytes of one 16-token KV block: layers x 2 (K, V) x kv heads x head dim x 2 (f16) x 16.
geom=$("$STRAIT" inspect "$MODEL" 2>/dev/null | awk '
  /\.block_count /{l=$2} /\.attention\.head_count_kv /{kv=$2} /\.attention\.head_count /{h=$2}
  /\.embedding_length /{d=$2} /\.attention\.key_length /{hd=$2}
  END { if (!hd && h) hd = d / h; if (l && kv && hd) print l * 2 * kv * hd * 2 * 16 }')
[ -n "$geom" ] || { echo "FAIL: cannot read the model geometry from strait inspect"; exit 1; }
BB=$geom

SRV=
N_START=0
start() { # start ARGS...: a server on an ephemeral port; sets U and LOG
  N_START=$((N_START + 1))
  LOG=$TMP/server.$N_START.log # a fresh file: never the previous server's port
  "$STRAIT" run -m "$MODEL" --host 127.0.0.1 --port 0 --ctx 1024 -t 2 --shutdown-grace-ms 0 "$@" \
    >"$LOG" 2>&1 &
  SRV=$!
  PIDS+=("$SRV")
  local port
  port=$(api_port "$LOG" "$SRV")
  [ -n "$port" ] || { echo "FAIL: strait run $* did not start:"; cat "$LOG"; exit 1; }
  U=http://127.0.0.1:$port
}
stop() {
  kill -TERM "$SRV"
  wait "$SRV"
  local rc=$?
  [ $rc = 0 ] && ok || bad "strait run exited $rc after SIGTERM"
}
metric() { curl -s "$U/metrics" | awk -v n="$1" '$1 == n { print $2 }'; }
complete() { # complete PROMPT MAX_TOKENS
  local body
  body=$(python3 -c 'import json,sys; print(json.dumps({"prompt":sys.argv[1],"max_tokens":int(sys.argv[2]),"temperature":0,"ignore_eos":True}))' "$1" "$2")
  curl -s -m 120 -o "$TMP/out.json" -w '%{http_code}' -H 'Content-Type: application/json' -d "$body" "$U/v1/completions"
}
PROMPT="The lighthouse keeper climbed the stairs every evening, counting the steps one by one, and at the top he lit the lamp that guided the fishing boats home through the fog and the rain of the northern sea."
LONG=$(python3 -c 'print(" ".join(["word%d" % i for i in range(150)]))') # about 300 tokens

# ---- 1. exact byte budget, no prefix cache, small batches --------------------------------
start --kv-cache-memory $((100 * BB + BB / 2)) --disable-prefix-cache --max-batch-size 4 --max-num-tokens-per-batch 64
got=$(metric strait_kv_blocks_total)
[ "$got" = 100 ] && ok || bad "--kv-cache-memory of 100.5 blocks of $BB bytes gave $got blocks"
for i in 1 2; do
  st=$(complete "$PROMPT" 2)
  [ "$st" = 200 ] && ok || bad "completion $i: HTTP $st $(head -c 300 "$TMP/out.json")"
done
got=$(metric strait_prefix_cache_hit_tokens_total)
[ "$got" = 0 ] && ok || bad "--disable-prefix-cache: a repeated prompt hit $got cached tokens"
# 8 at once under --max-batch-size 4: never more than 4 sequences in a step
s0=$(metric strait_batch_steps_total) q0=$(metric strait_batch_sequences_total)
pids=()
for i in $(seq 8); do
  complete "Request number $i: $PROMPT" 12 >"$TMP/st.$i" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
n200=0
for i in $(seq 8); do [ "$(cat "$TMP/st.$i")" = 200 ] && n200=$((n200 + 1)); done
[ "$n200" = 8 ] && ok || bad "8 concurrent completions: $n200 answered 200"
s1=$(metric strait_batch_steps_total) q1=$(metric strait_batch_sequences_total)
if python3 -c 'import sys; s0,q0,s1,q1=map(float,sys.argv[1:]); sys.exit(0 if s1>s0 and (q1-q0) <= 4*(s1-s0) and (q1-q0) > 2*(s1-s0) else 1)' \
  "$s0" "$q0" "$s1" "$q1"; then ok; else
  bad "--max-batch-size 4: $((${q1%.*} - ${q0%.*})) sequences in $((${s1%.*} - ${s0%.*})) steps"
fi
# a ~300-token prompt under 64 rows per step: at least 5 steps, none over 64 rows
s0=$(metric strait_batch_steps_total) t0=$(metric strait_batch_tokens_total)
st=$(complete "$LONG" 1)
[ "$st" = 200 ] && ok || bad "long completion: HTTP $st $(head -c 300 "$TMP/out.json")"
s1=$(metric strait_batch_steps_total) t1=$(metric strait_batch_tokens_total)
if python3 -c 'import sys; s0,t0,s1,t1=map(float,sys.argv[1:]); sys.exit(0 if t1-t0 >= 250 and s1-s0 >= (t1-t0)/64 else 1)' \
  "$s0" "$t0" "$s1" "$t1"; then ok; else
  bad "--max-num-tokens-per-batch 64: $((${t1%.*} - ${t0%.*})) rows in $((${s1%.*} - ${s0%.*})) steps"
fi
stop

# ---- 2. a share of available memory, prefix cache on -------------------------------------
avail=$(awk '/^MemAvailable:/ { print $2 * 1024 }' /proc/meminfo)
FR=$(python3 -c "print('%.6f' % (64e6 / $avail))") # about 64 MB
start --kv-cache-fraction "$FR"
got=$(metric strait_kv_blocks_total)
if python3 -c 'import sys; g,want=float(sys.argv[1]),64e6/float(sys.argv[2]); sys.exit(0 if 0.75*want <= g <= 1.25*want else 1)' \
  "${got:-0}" "$BB"; then ok; else
  bad "--kv-cache-fraction $FR of $avail bytes gave $got blocks of $BB bytes, want about $((64000000 / BB))"
fi
for i in 1 2; do
  st=$(complete "$PROMPT" 2)
  [ "$st" = 200 ] && ok || bad "completion $i: HTTP $st"
done
got=$(metric strait_prefix_cache_hit_tokens_total)
if [ -n "$got" ] && [ "${got%.*}" -ge 16 ] && [ $((${got%.*} % 16)) = 0 ]; then ok; else
  bad "with the prefix cache, a repeated prompt hit '$got' cached tokens (want whole blocks, >= 16)"
fi
stop

echo "test_run_flags: $pass passed, $fail failed"
[ $fail = 0 ]
