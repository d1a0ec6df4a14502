# Helpers of the tests that run the model over HTTP (sourced, not run):
# PROMPTS, complete_all and model_layers. They read STRAIT, MODEL and
# optionally PY and MAXTOK.
# The prompts the multi-process tests compare across configurations.
PROMPTS=("The capital of France is" "Once upon a time, in a small village," "def fibonacci(n):" "1, 2, 3, 4,")

# complete_all URL OUT: every prompt at once as a greedy completion of $MAXTOK
# tokens (default 24); the text of prompt N goes to OUT.N.txt.
complete_all() {
  local u=$1 out=$2 i=0 pids=() py=${PY:-python3}
  for p in "${PROMPTS[@]}"; do
    body=$("$py" -c 'import json,sys; print(json.dumps({"model":"m","prompt":sys.argv[1],"max_tokens":int(sys.argv[2]),"temperature":0}))' "$p" "${MAXTOK:-24}")
    curl -s -m 120 -H 'Content-Type: application/json' -d "$body" "$u/v1/completions" -o "$out.$i" &
    pids+=($!)
    i=$((i + 1))
  done
  for p in "${pids[@]}"; do wait "$p"; done
  for i in "${!PROMPTS[@]}"; do
    "$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["choices"][0]["text"])' "$out.$i" >"$out.$i.txt" \
      2>/dev/null || { echo "no completion in $out.$i:"; cat "$out.$i"; }
  done
}

# model_layers: the layer count of $MODEL (strait inspect's "layers N" line).
model_layers() {
  local n
  n=$("$STRAIT" inspect "$MODEL" 2>/dev/null | sed -n 's/^ *layers \([0-9][0-9]*\)$/\1/p' | head -1)
  [ -n "$n" ] || { echo "cannot read the layer count of $MODEL" >&2; return 1; }
  echo "$n"
}
