#!/usr/bin/env bash
# strait run reads the weights in before it listens: on a terminal (a pty
# from script(1)) a progress bar reaches 100% and the bytes read equal the
# model's weight bytes; with stderr not a terminal there is no bar, only
# the log line. The server listens (and /health answers) only after the read-in.
#   test_load_progress.sh path/to/strait
set -uo pipefail
STRAIT=$(realpath "${1:?usage: test_load_progress.sh path/to/strait}")
source "$(dirname "$0")/../lib.sh"
MODEL=${ST_TEST_MODEL:-${STRAIT_HOME:-$HOME/.cache/strait}/models/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -f "$MODEL" ] || { echo "SKIP: the default model is not cached ($MODEL); run tools/setup.sh first"; exit 77; }
command -v script >/dev/null || { echo "SKIP: script(1) is not installed"; exit 77; }
# on a pty
script -qefc "exec $STRAIT run -m $MODEL --host 127.0.0.1 --port 0 -t 1" "$TMP/tty.log" >/dev/null 2>&1 &
pid=$!
PIDS+=($pid)
port=$(api_port "$TMP/tty.log" $pid)
if [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/health" >/dev/null; then ok; else
  bad "strait run on a pty never became healthy: $(tail -5 "$TMP/tty.log")"; fi
# SIGINT to script(1)'s child only: a pattern match would reach other tests' servers
kill -INT $(pgrep -P "$pid") 2>/dev/null
wait "$pid"
tr '\r' '\n' <"$TMP/tty.log" >"$TMP/tty.txt"
grep -aq "loading weights \[#*\] 100%" "$TMP/tty.txt" && ok || bad "no progress bar reaching 100% on a terminal: $(head -c 600 "$TMP/tty.txt")"
loaded=$(sed -n 's/.*, \([0-9.]*\) MB of weights in .*/\1/p' "$TMP/tty.txt" | head -1)
read_in=$(sed -n 's/.*weights read in: \([0-9.]*\) MB in .*/\1/p' "$TMP/tty.txt" | head -1)
[ -n "$loaded" ] && [ "$loaded" = "$read_in" ] && ok || bad "read in '$read_in' MB, the model binds '$loaded' MB"

# not a terminal
"$STRAIT" run -m "$MODEL" --host 127.0.0.1 --port 0 -t 1 2>"$TMP/plain.log" &
pid=$!
PIDS+=($pid)
port=$(api_port "$TMP/plain.log" $pid)
if [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/health" >/dev/null; then ok; else
  bad "strait run never became healthy: $(tail -5 "$TMP/plain.log")"; fi
kill -INT "$pid"
wait "$pid"
grep -q "loading weights \[" "$TMP/plain.log" && bad "a progress bar in a log file" || ok
grep -q "weights read in: $loaded MB" "$TMP/plain.log" && ok || bad "no read-in log line: $(cat "$TMP/plain.log")"

echo "load progress: $pass passed, $fail failed"
[ "$fail" = 0 ]
