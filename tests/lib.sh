# The common start of the multi-process shell tests (sourced, not run):
# a scratch directory $TMP (kept when KEEP_TMP is set), PIDS (every pid
# added is killed when the script exits, however it exits), and the pass /
# fail counters with ok and bad MESSAGE.
TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  [ -n "${KEEP_TMP:-}" ] && echo "kept $TMP" || rm -rf "$TMP"
}
trap cleanup EXIT
fail=0
pass=0
ok() { pass=$((pass + 1)); }
. "$(dirname "${BASH_SOURCE[0]}")/lib_wait.sh" # wait_log, api_port, ctl_port
bad() { echo "FAIL $*"; fail=$((fail + 1)); }

