#!/usr/bin/env bash
# A cluster across network namespaces, as across machines: the scheduler
# (`strait run -n 2`) in namespace S, two `strait join` nodes in namespaces
# A and B, each joined to S by a veth pair (10.N.1.0/24 and 10.N.2.0/24,
# private addresses that exist only inside these namespaces; S routes
# between them). The nodes find S at its veth address with -s and advertise
# their own addresses, so the pipeline head (in S) -> A -> B -> S really
# crosses the links. Greedy output of a few prompts (streamed) must equal a
# single `strait run` in the root namespace.
#   test_cluster_netns.sh path/to/strait
# Skips (77) without root, iproute2 or namespace support, without curl, or
# when the default model is not cached. Namespaces are removed on any exit.
set -uo pipefail
STRAIT=${1:?usage: test_cluster_netns.sh path/to/strait}
STRAIT=$(cd "$(dirname "$STRAIT")" && pwd)/$(basename "$STRAIT")
HERE=$(cd "$(dirname "$0")" && pwd)
MODEL=${ST_TEST_MODEL:-${STRAIT_HOME:-$HOME/.cache/strait}/models/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -f "$MODEL" ] || { echo "SKIP: the default model is not cached ($MODEL; run: strait models pull)"; exit 77; }
command -v curl >/dev/null || { echo "SKIP: curl is not installed"; exit 77; }
"$STRAIT" run --help 2>/dev/null | grep -q -- '--nodes' ||
  { echo "SKIP: this strait run has no --nodes (no cluster scheduler)"; exit 77; }
[ "$(id -u)" = 0 ] || { echo "SKIP: network namespaces need root"; exit 77; }
command -v ip >/dev/null || { echo "SKIP: iproute2 (ip) is not installed"; exit 77; }

TMP=$(mktemp -d)
PIDS=()
NS_S=st-cl-s-$$ NS_A=st-cl-a-$$ NS_B=st-cl-b-$$
cleanup() {
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  ip netns del $NS_A 2>/dev/null; ip netns del $NS_B 2>/dev/null; ip netns del $NS_S 2>/dev/null
  [ -n "${KEEP_TMP:-}" ] && echo "kept $TMP" || rm -rf "$TMP"
  true
}
trap cleanup EXIT INT TERM
fail=0
pass=0
ok() { pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }

. "$HERE/cluster_lib.sh"

# ---- the network: S <-veth-> A, S <-veth-> B ---------------------------------------------------
N=$((($$ % 200) + 20))
if ! ip netns add $NS_S 2>/dev/null || ! ip netns add $NS_A 2>/dev/null || ! ip netns add $NS_B 2>/dev/null; then
  echo "SKIP: cannot create network namespaces here"; exit 77
fi
if ! ip -n $NS_S link add sa type veth peer name veth-a netns $NS_A 2>/dev/null ||
   ! ip -n $NS_S link add sb type veth peer name veth-b netns $NS_B 2>/dev/null; then
  echo "SKIP: cannot create veth pairs here"; exit 77
fi
set -e
for ns in $NS_S $NS_A $NS_B; do ip -n $ns link set lo up; done
ip -n $NS_S addr add 10.$N.1.1/24 dev sa; ip -n $NS_S link set dev sa up
ip -n $NS_S addr add 10.$N.2.1/24 dev sb; ip -n $NS_S link set dev sb up
ip -n $NS_A addr add 10.$N.1.2/24 dev veth-a;  ip -n $NS_A link set dev veth-a up
ip -n $NS_B addr add 10.$N.2.2/24 dev veth-b;  ip -n $NS_B link set dev veth-b up
ip -n $NS_A route add default via 10.$N.1.1
ip -n $NS_B route add default via 10.$N.2.1
ip netns exec $NS_S sysctl -qw net.ipv4.ip_forward=1 # this namespace's own setting
set +e

N_LAYERS=$(model_layers) || exit 1
CUT=$((N_LAYERS / 2))

# ---- one machine, root namespace -----------------------------------------------------------------
"$STRAIT" run -m "$MODEL" --host 127.0.0.1 --port 0 -t 1 --kv-cache-memory 67108864 --ctx 2048 \
  >"$TMP/run.log" 2>&1 &
RUN=$!
PIDS+=($RUN)
PORT=$(api_port "$TMP/run.log" $RUN)
[ -n "$PORT" ] || { echo "FAIL: strait run did not start:"; cat "$TMP/run.log"; exit 1; }
stream_all "http://127.0.0.1:$PORT" "$TMP/one"
kill -TERM $RUN; wait $RUN 2>/dev/null

# ---- the cluster -------------------------------------------------------------------------------------
TOKEN=netns-test-$$-$RANDOM
CPORT=$((20000 + RANDOM % 20000))
ip netns exec $NS_S "$STRAIT" run -m "$MODEL" -n 2 --cluster-token "$TOKEN" --cluster-port $CPORT \
  --transport tcp --host 127.0.0.1 --port 0 -t 1 --kv-cache-memory 67108864 --ctx 2048 >"$TMP/sched.log" 2>&1 &
SCHED=$!
PIDS+=($SCHED)
PORT=$(api_port "$TMP/sched.log" $SCHED)
[ -n "$PORT" ] || { echo "FAIL: the scheduler did not start:"; cat "$TMP/sched.log"; exit 1; }
# each node joins at the scheduler's address on its own link (a different one for each)
ip netns exec $NS_A "$STRAIT" join -s 10.$N.1.1:$CPORT --cluster-token "$TOKEN" --port 0 --name node-a \
  --key-file "$TMP/a.key" -t 1 --no-shm --start-layer 0 --end-layer $CUT >"$TMP/a.log" 2>&1 &
PIDS+=($!)
ip netns exec $NS_B "$STRAIT" join -s 10.$N.2.1:$CPORT --cluster-token "$TOKEN" --port 0 --name node-b \
  --key-file "$TMP/b.key" -t 1 --no-shm --start-layer $CUT --end-layer $N_LAYERS >"$TMP/b.log" 2>&1 &
PIDS+=($!)
export NS_EXEC="ip netns exec $NS_S"
if ! wait_serving "http://127.0.0.1:$PORT" 180 $SCHED; then
  bad "no pipeline became ready"; tail -20 "$TMP/sched.log" "$TMP/a.log" "$TMP/b.log"; exit 1
fi
ok
# the nodes advertised their own veth addresses, not a wildcard
grep -q "data plane at 10\.$N\.1\.2:" "$TMP/a.log" && grep -q "data plane at 10\.$N\.2\.2:" "$TMP/b.log" && ok ||
  bad "advertised addresses: $(grep -h 'data plane at' "$TMP/a.log" "$TMP/b.log")"
forwarded() { ip netns exec $NS_S cat /proc/net/snmp | awk '/^Ip: [0-9]/ {print $7}'; } # ForwDatagrams
f0=$(forwarded)
stream_all "http://127.0.0.1:$PORT" "$TMP/ns"
f1=$(forwarded)
compare_all "$TMP/one" "$TMP/ns" "netns cluster" && ok || bad "cluster output differs from strait run"
# the activations really went A -> B through S: at least one routed packet per generated token
[ $((f1 - f0)) -ge $MAX_TOKENS ] && ok || bad "S forwarded only $((f1 - f0)) packets between A and B while generating"

kill -TERM $SCHED; wait $SCHED 2>/dev/null
echo "cluster_netns: $pass passed, $fail failed"
[ $fail = 0 ]
