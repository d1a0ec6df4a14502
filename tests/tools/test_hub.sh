#!/usr/bin/env bash
# `strait models` against a fake Hugging Face hub (tests/tools/hub_server.py):
# resumed downloads, checksum failures, 404s, repo file choice, the cache
# listing and name resolution. No network: HF_ENDPOINT points at 127.0.0.1.
# usage: bash test_hub.sh path/to/strait
set -u
STRAIT=${1:?usage: test_hub.sh path/to/strait}
HERE=$(cd "$(dirname "$0")" && pwd)
command -v python3 >/dev/null || { echo "SKIP: python3 not found"; exit 77; }

TMP=$(mktemp -d)
SRV_PID=
cleanup() {
    [ -n "$SRV_PID" ] && kill "$SRV_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

export STRAIT_HOME=$TMP/home
unset HF_TOKEN
SERVED=$TMP/served
LOG=$TMP/server.log

# The server prints its port once it listens: a blocking read, bounded.
coproc SRV { exec python3 "$HERE/hub_server.py" --dump "$SERVED" --max-seconds 300 2>"$LOG"; }
SRV_PID=$SRV_PID
PORT=
read -r -t 30 -u "${SRV[0]}" PORT || true
[ -n "$PORT" ] || { echo "FAIL: hub_server.py did not start"; cat "$LOG"; exit 1; }
export HF_ENDPOINT=http://127.0.0.1:$PORT

fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }
# run strait with a time bound; stdout -> $TMP/out, stderr -> $TMP/err, status -> $rc
st() { timeout 60 "$STRAIT" "$@" >"$TMP/out" 2>"$TMP/err"; rc=$?; }
expect_ok() { [ "$rc" -eq 0 ] && ok "$1" || { fail "$1 (exit $rc)"; cat "$TMP/err"; }; }
expect_err() { # description, exit code wanted, text wanted in stderr
    if [ "$rc" -eq "$2" ] && grep -qi -- "$3" "$TMP/err"; then ok "$1"; else
        fail "$1: exit $rc (want $2), stderr lacks '$3':"; cat "$TMP/err"; fi
}
M=$STRAIT_HOME/models

# ---- a GGUF repo: the first transfer is cut off halfway and resumed ----------
st models pull hf:test/tiny-GGUF
expect_ok "pull hf:test/tiny-GGUF"
got=$(cat "$TMP/out")
[ "$got" = "$M/test--tiny-GGUF/tiny.Q4_0.gguf" ] && ok "Q4_0 chosen over Q8_0" || fail "pull printed '$got'"
cmp -s "$got" "$SERVED/test/tiny-GGUF/tiny.Q4_0.gguf" && ok "bytes equal the served file" || fail "downloaded bytes differ"
grep -q "tiny-GGUF.*resolve.*tiny.Q4_0.gguf" "$LOG" || fail "no resolve request logged"
grep -q "cdn/.* range=- -> 200 dropped" "$LOG" && ok "first transfer was dropped" || fail "server did not drop"
grep -q "cdn/.* range=bytes=[1-9][0-9]*- -> 206" "$LOG" && ok "resumed with a Range request (206)" || fail "no 206 resume"
grep -q "resum" "$TMP/err" || fail "no resume message on stderr"
[ ! -e "$got.part" ] || fail ".part left behind"

n_before=$(grep -c "^REQ" "$LOG")
st models pull hf:test/tiny-GGUF
expect_err "second pull is a no-op" 0 "already cached"
[ "$(grep -c "^REQ" "$LOG")" -eq "$n_before" ] && ok "no request for a cached model" || fail "cached pull hit the server"

# ---- a server that ignores Range: the resume restarts from zero (200) --------
st models pull hf:test/norange-GGUF
expect_ok "pull through a server without Range support"
cmp -s "$(cat "$TMP/out")" "$SERVED/test/norange-GGUF/nr.Q4_1.gguf" && ok "restarted download is intact" ||
    fail "norange bytes differ"

# ---- resume across processes: no retries, then a second run -------------------
STRAIT_HUB_RETRIES=0 st models pull hf:test/tiny-GGUF/tiny.Q8_0.gguf
[ "$rc" -ne 0 ] && ok "cut-off pull with retries off fails" || fail "cut-off pull succeeded"
part=$M/test--tiny-GGUF/tiny.Q8_0.gguf.part
[ -s "$part" ] && ok "partial file kept ($(stat -c %s "$part") bytes)" || fail "no .part after the cut-off"
timeout 60 "$STRAIT" models list >"$TMP/out" 2>&1
grep -q "tiny.Q8_0.gguf.part.*partial" "$TMP/out" && ok "list shows the partial download" || fail "list lacks the partial"
n_before=$(grep -c "^REQ" "$LOG")
st models pull hf:test/tiny-GGUF/tiny.Q8_0.gguf
expect_ok "second run resumes"
cmp -s "$M/test--tiny-GGUF/tiny.Q8_0.gguf" "$SERVED/test/tiny-GGUF/tiny.Q8_0.gguf" && ok "resumed file intact" ||
    fail "resumed Q8_0 differs"
tail -n +$((n_before + 1)) "$LOG" | grep -q "cdn/.* range=bytes=[1-9][0-9]*- -> 206" &&
    ok "second run sent a Range request" || fail "second run did not resume with a Range"

# ---- errors ---------------------------------------------------------------------
st models pull hf:test/bad-GGUF
expect_err "wrong sha256 fails" 1 "checksum mismatch"
[ -z "$(ls -A "$M/test--bad-GGUF" 2>/dev/null)" ] && ok "bad download deleted" || fail "bad file kept: $(ls "$M/test--bad-GGUF")"

st models pull hf:test/no-such-repo
expect_err "unknown repo" 1 "not found"
st models pull hf:test/broken-GGUF
expect_err "404 on a file" 1 "404 Not Found"
st models pull hf:test/tiny-GGUF/missing.gguf
expect_err "unknown file lists the repo's files" 1 "tiny.Q8_0.gguf"
st models pull hf:test/many-GGUF
expect_err "no preferred quant: error lists the files" 1 "m.Q5_K_M.gguf"
st models pull hf:test/gated-GGUF
expect_err "gated repo without a token" 1 "HF_TOKEN"
HF_TOKEN=secret st models pull hf:test/gated-GGUF
expect_ok "gated repo with HF_TOKEN"
st models pull "hf:test"
expect_err "malformed reference" 1 "hf:ORG/NAME"
HF_ENDPOINT=http://127.0.0.1:1 st models pull hf:test/other-GGUF
expect_err "unreachable hub" 1 "cannot fetch"

# ---- a safetensors repo: config, tokenizer and weights, not the rest ---------
st models pull hf:test/tiny-safetensors
expect_ok "pull a safetensors repo"
d=$(cat "$TMP/out")
[ "$d" = "$M/test--tiny-safetensors" ] || fail "safetensors path '$d'"
for f in config.json tokenizer.json tokenizer_config.json model.safetensors; do
    cmp -s "$d/$f" "$SERVED/test/tiny-safetensors/$f" || fail "safetensors $f differs or is missing"
done
[ ! -e "$d/README.md" ] && [ ! -e "$d/model.onnx" ] && ok "only model files fetched" || fail "extra files fetched"

# ---- list and path ------------------------------------------------------------------
st models list
expect_ok "models list"
grep -q "test--tiny-GGUF/tiny.Q4_0.gguf .*2.2 MiB .*gguf" "$TMP/out" && ok "list shows the GGUF with its size" ||
    { fail "list output:"; cat "$TMP/out"; }
grep -q "test--tiny-safetensors .*safetensors" "$TMP/out" || fail "list lacks the safetensors dir"

want=$M/test--tiny-GGUF/tiny.Q4_0.gguf
for name in hf:test/tiny-GGUF test--tiny-GGUF/tiny.Q4_0.gguf test--tiny-GGUF/tiny.Q4_0 tiny.Q4_0.gguf "$want"; do
    st models path "$name"
    [ "$rc" -eq 0 ] && [ "$(cat "$TMP/out")" = "$want" ] && ok "path $name" ||
        { fail "path $name -> '$(cat "$TMP/out")' (exit $rc)"; cat "$TMP/err"; }
done
st models path tiny-safetensors
[ "$rc" -eq 0 ] && [ "$(cat "$TMP/out")" = "$M/test--tiny-safetensors" ] && ok "path by repo NAME" || fail "path tiny-safetensors"
st models path test/tiny-safetensors
[ "$(cat "$TMP/out")" = "$M/test--tiny-safetensors" ] && ok "path by ORG/NAME" || fail "path test/tiny-safetensors"
st models path no-such-model
expect_err "path of an unknown name lists the cache" 1 "test--tiny-GGUF/tiny.Q4_0.gguf"
grep -q "strait models pull" "$TMP/err" || fail "unknown-name error does not suggest a pull"
st models path hf:test/norange-GGUF@v2
expect_err "path never downloads" 1 "not cached"
st models path
expect_err "default model not cached" 1 "strait models pull"

# ---- usage ----------------------------------------------------------------------------
st models --frob
expect_err "unknown flag" 2 "'--frob'"
st models frob
expect_err "unknown subcommand" 2 "'frob'"
st models pull --frob
expect_err "unknown pull flag" 2 "'--frob'"
st models list extra
expect_err "extra argument" 2 "'extra'"
for sub in pull list path; do
    st models $sub --help
    [ "$rc" -eq 0 ] && grep -q "usage: strait models $sub" "$TMP/out" || fail "models $sub --help"
done

echo "$fails failure(s)"
[ "$fails" -eq 0 ]
