#!/usr/bin/env bash
# Model files strait cannot run give a clear error on stderr naming the
# problem and exit 1, never a crash: an unknown architecture, an unsupported
# or unknown tensor type, tensor data past the end, truncated / misaligned /
# malformed safetensors. A vocabulary-only GGUF (no tensors) is enough for
# `strait tokenize`, which reads stdin byte for byte and adds no BOS.
#   test_cli_model_errors.sh path/to/strait
set -uo pipefail
STRAIT=${1:?usage: test_cli_model_errors.sh path/to/strait}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail=0
pass=0

# check NAME EXPECTED_EXIT STDERR_PATTERN -- command...   (stdout is ignored)
check() {
  local name=$1 want=$2 pat=$3
  shift 4
  local err rc
  err=$("$@" 2>&1 >/dev/null </dev/null)
  rc=$?
  if [ "$rc" != "$want" ]; then
    echo "FAIL $name: exit $rc, want $want; stderr: ${err:0:400}"
    fail=$((fail + 1))
  elif [ -n "$pat" ] && ! grep -qE -- "$pat" <<<"$err"; then
    echo "FAIL $name: stderr lacks /$pat/: ${err:0:400}"
    fail=$((fail + 1))
  else
    pass=$((pass + 1))
  fi
}

# gguf.py OUT ARCH TYPE NE0 OFFSET: a GGUF v3 file with one tensor "w"
# (1-D, NE0 elements, ggml type id TYPE at data offset OFFSET) and 256 data bytes.
cat >"$TMP/gguf.py" <<'EOF'
import struct, sys
out, arch, ty, ne0, off = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def s(x): b = x.encode(); return struct.pack("<Q", len(b)) + b
kv = s("general.architecture") + struct.pack("<I", 8) + s(arch)
ti = s("w") + struct.pack("<I", 1) + struct.pack("<Q", ne0) + struct.pack("<I", ty) + struct.pack("<Q", off)
b = b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + kv + ti
b += b"\0" * (-len(b) % 32) + bytes(256)
open(out, "wb").write(b)
EOF
mk() { python3 "$TMP/gguf.py" "$TMP/$1.gguf" "$2" "$3" "$4" "$5"; }

mk arch gpt2x 0 16 0
check unknown-arch-generate 1 "unsupported architecture 'gpt2x'" -- "$STRAIT" generate -m "$TMP/arch.gguf" -p x
check unknown-arch-inspect 1 "error: .*unsupported architecture 'gpt2x'" -- "$STRAIT" inspect "$TMP/arch.gguf"
mk q4k llama 12 256 0
check q4k-type 1 'type Q4_K .*not supported' -- "$STRAIT" generate -m "$TMP/q4k.gguf" -p x
check q4k-inspect 1 'Q4_K' -- "$STRAIT" inspect "$TMP/q4k.gguf"
mk t99 llama 99 16 0
check unknown-type-id 1 'unknown ggml type id 99' -- "$STRAIT" generate -m "$TMP/t99.gguf" -p x
mk past llama 0 16 8192
check data-past-end 1 'past end of file' -- "$STRAIT" inspect "$TMP/past.gguf"
mk unaligned llama 0 16 4
check data-unaligned 1 'not a multiple of the alignment' -- "$STRAIT" inspect "$TMP/unaligned.gguf"
mk ok llama 0 16 0
for cut in 3 20 40 $(($(stat -c %s "$TMP/ok.gguf") - 1)); do
  head -c "$cut" "$TMP/ok.gguf" >"$TMP/cut.gguf"
  check "gguf-truncated-$cut" 1 'error: .*cut.gguf' -- "$STRAIT" inspect "$TMP/cut.gguf"
done

# ---- safetensors (the committed tiny qwen3) -------------------------------------
TINY=$SRC/tests/golden/qwen3-tiny
ST=$TINY/model.safetensors
size=$(stat -c %s "$ST")
for cut in 0 7 10 500 $((size - 100)); do
  mkdir -p "$TMP/st$cut"
  cp "$TINY/config.json" "$TMP/st$cut/"
  head -c "$cut" "$ST" >"$TMP/st$cut/model.safetensors"
  check "safetensors-truncated-$cut" 1 "error: .*st$cut" -- "$STRAIT" generate -m "$TMP/st$cut" -p x
done
# one more header byte: every tensor's data lands on an odd address
mkdir -p "$TMP/mis"
cp "$TINY/config.json" "$TMP/mis/"
python3 - "$ST" "$TMP/mis/model.safetensors" <<'EOF'
import struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
open(sys.argv[2], "wb").write(struct.pack("<Q", n + 1) + b[8:8 + n] + b" " + b[8 + n:])
EOF
check safetensors-misaligned 1 'not aligned' -- "$STRAIT" inspect "$TMP/mis"
mkdir -p "$TMP/badjson"
cp "$TINY/config.json" "$TMP/badjson/"
cp "$ST" "$TMP/badjson/model.safetensors"
printf '}' | dd of="$TMP/badjson/model.safetensors" bs=1 seek=8 conv=notrunc 2>/dev/null
check safetensors-bad-json 1 'header' -- "$STRAIT" generate -m "$TMP/badjson" -p x
mkdir -p "$TMP/badarch"
cp "$ST" "$TMP/badarch/"
echo '{"model_type": "gpt2"}' >"$TMP/badarch/config.json"
check safetensors-unknown-arch 1 "unsupported architecture 'gpt2'" -- "$STRAIT" generate -m "$TMP/badarch" -p x

# ---- a vocabulary-only GGUF --------------------------------------------------------
FX=${ST_FIXTURES:-$SRC/../shared/fixtures}
VOCAB=$FX/vocab/ggml-vocab-llama-spm.gguf
if [ -f "$VOCAB" ]; then
  text=$'  Hello world\n\ttrailing  '
  ids=$(printf '%s' "$text" | "$STRAIT" tokenize -m "$VOCAB" 2>/dev/null)
  rc=$?
  # llama-spm adds BOS (id 1) by default; tokenize must not
  if [ "$rc" = 0 ] && [ -n "$ids" ] && [ "${ids%% *}" != 1 ]; then pass=$((pass + 1)); else
    echo "FAIL vocab-only-tokenize: exit $rc, ids '$ids'"; fail=$((fail + 1)); fi
  back=$(echo "$ids" | "$STRAIT" tokenize -m "$VOCAB" --decode 2>/dev/null; printf x)
  if [ "${back%x}" = "$text" ]; then pass=$((pass + 1)); else
    echo "FAIL vocab-only-roundtrip: '${back%x}'"; fail=$((fail + 1)); fi
  check vocab-only-generate 1 'error: ' -- "$STRAIT" generate -m "$VOCAB" -p x
else
  echo "SKIP vocabulary-only checks: $VOCAB absent"
fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
