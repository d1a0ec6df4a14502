# Waiting for a process to say something in its log (sourced, not run; no
# side effects). Every wait has a deadline and stops early when the process
# it waits for has died.

# wait_log FILE PID SED_EXPR [SECONDS]: the first value SED_EXPR extracts from
# FILE, echoed; empty when PID died or the time (default 120 s) ran out.
wait_log() {
  local file=$1 pid=$2 expr=$3 v= end=$((SECONDS + ${4:-120}))
  while [ $SECONDS -lt $end ]; do
    v=$(sed -n "$expr" "$file" 2>/dev/null | head -1)
    [ -n "$v" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "$v"
}

# api_port FILE PID [SECONDS]: the port of strait's "listening on
# http://127.0.0.1:PORT" line (the API of run, serve's head, chat).
api_port() { wait_log "$1" "$2" 's|.*listening on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "${3:-120}"; }

# ctl_port FILE PID: the cluster port a scheduler prints in its join command.
ctl_port() { wait_log "$1" "$2" 's|.*join with: strait join -s [^ ]*:\([0-9]*\) --cluster-token.*|\1|p' "${3:-120}"; }
