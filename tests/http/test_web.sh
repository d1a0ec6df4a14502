#!/usr/bin/env bash
# The web UI of `strait run` in a real browser: starts the server with the
# default model on an ephemeral 127.0.0.1 port, and `strait chat` in front of
# it, and runs web_e2e.py (headless Debian chromium over the DevTools
# protocol): chat with streaming, stop, settings (the API key the server is
# started with is entered there), safe rendering of hostile output, reload,
# phone width, the Cluster and Setup views, and chat through the proxy.
# Screenshots go to $ST_BINARY_DIR/web-screenshots/ (else a temp dir; the
# path is printed).
#   test_web.sh path/to/strait
# Skips (77) when the default model is not cached, /usr/bin/chromium is
# missing, or python3 cannot import websocket (pip install websocket-client).
# Python: $ST_TEST_PYTHON, else BUILD_DIR/pyenv/bin/python3 if present, else python3.
set -uo pipefail
STRAIT=${1:?usage: test_web.sh path/to/strait}
HERE=$(cd "$(dirname "$0")" && pwd)
MODEL=${ST_TEST_MODEL:-${STRAIT_HOME:-$HOME/.cache/strait}/models/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -f "$MODEL" ] || { echo "SKIP: the default model is not cached ($MODEL; run: strait models pull)"; exit 77; }
CHROMIUM=${ST_CHROMIUM:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] || { echo "SKIP: $CHROMIUM is missing (apt-get install chromium)"; exit 77; }
PY=${ST_TEST_PYTHON:-}
if [ -z "$PY" ]; then
  PY=python3
  [ -x "$(dirname "$STRAIT")/pyenv/bin/python3" ] && PY="$(dirname "$STRAIT")/pyenv/bin/python3"
fi
"$PY" -c 'import websocket' 2>/dev/null || {
  echo "SKIP: $PY cannot import websocket (pip install websocket-client)"
  exit 77
}

TMP=$(mktemp -d)
. "$(dirname "$0")/../lib_wait.sh" # wait_log, api_port
KEY=web-test-key-$$
SRV=
CHAT=
cleanup() {
  [ -n "$SRV" ] && kill -KILL "$SRV" 2>/dev/null
  [ -n "$CHAT" ] && kill -KILL "$CHAT" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
if [ -n "${ST_BINARY_DIR:-}" ]; then SHOTS=$ST_BINARY_DIR/web-screenshots; else SHOTS=$(mktemp -d /tmp/strait-web-shots.XXXXXX); fi
mkdir -p "$SHOTS"

"$STRAIT" run -m "$MODEL" --host 127.0.0.1 --port 0 --kv-cache-memory 268435456 --ctx 2048 \
  --api-key "$KEY" >"$TMP/server.log" 2>&1 &
SRV=$!
PORT=$(api_port "$TMP/server.log" $SRV)
if [ -z "$PORT" ]; then
  echo "FAIL: strait run did not start listening:"
  cat "$TMP/server.log"
  exit 1
fi
"$STRAIT" chat -s "127.0.0.1:$PORT" --host 127.0.0.1 --port 0 >"$TMP/chat.log" 2>&1 &
CHAT=$!
CPORT=$(api_port "$TMP/chat.log" $CHAT 10)
if [ -z "$CPORT" ]; then
  echo "FAIL: strait chat did not start listening:"
  cat "$TMP/chat.log"
  exit 1
fi
ST_CHROMIUM=$CHROMIUM timeout 300 "$PY" "$HERE/web_e2e.py" "http://127.0.0.1:$PORT" "$SHOTS" "$KEY" \
  "http://127.0.0.1:$CPORT"
rc=$?
echo "screenshots: $SHOTS"
if [ $rc -ne 0 ]; then
  echo "--- server log (tail)"
  tail -20 "$TMP/server.log"
  echo "--- strait chat log (tail)"
  tail -20 "$TMP/chat.log"
  exit 1
fi
kill -TERM "$CHAT"
wait "$CHAT"
crc=$?
CHAT=
[ $crc -eq 0 ] || { echo "FAIL: strait chat exited $crc after SIGTERM"; exit 1; }
kill -TERM "$SRV"
wait "$SRV"
src=$?
SRV=
[ $src -eq 0 ] || { echo "FAIL: strait run exited $src after SIGTERM"; exit 1; }
exit 0
