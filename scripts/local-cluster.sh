#!/usr/bin/env bash
# A Ray cluster of two nodes on this one machine, token auth on: a head and one more node,
# each offering its own CPUs, to try (and test) multi-node runs without a second machine.
#   bash scripts/local-cluster.sh start    # head 127.0.0.1:6390 (dashboard http://127.0.0.1:8275) + 1 node
#   RAY_AUTH_MODE=token trial run --address 127.0.0.1:6390 --config ... --set scaling.num_workers=2
#   bash scripts/local-cluster.sh stop     # stops these nodes, and nothing else
# Settings (environment):
#   LOCAL_CLUSTER_DIR    Ray's temp dir, node logs and pid files  (/tmp/trial-local-cluster; keep it
#                        short: Ray's socket paths under it must stay below 108 characters)
#   RAY_PORT             the head's GCS port           (6390, not 6379: never a user's own head)
#   RAY_DASHBOARD_PORT   dashboard and job API         (8275, not 8265)
#   RAY_CLIENT_PORT      Ray Client server on the head (10391, not 10001)
#   RAY_NODE_CPUS        CPUs each node offers         (1)
#   RAY_EXTRA_NODES      nodes besides the head        (1; 0 starts a head alone)
#   RAY_OBJECT_STORE_MB  object store of each node     (256)
#   RAY                  the ray command               (ray)
# Every other port (node and object managers, workers, agents, metrics) is left to the OS,
# so the nodes clash neither with each other nor with another Ray on this machine.
#
# Each node is one `ray start --block` in a session of its own, its pid in
# $LOCAL_CLUSTER_DIR/<node>.pid; `stop` ends exactly those sessions. Never `ray stop` here:
# it stops every Ray on the machine, other people's too.
#
# Token auth: the nodes, drivers and `ray job` read the token from ~/.ray/auth_token, or
# from the file RAY_AUTH_TOKEN_PATH names (`ray get-auth-token --generate` writes the
# former), with RAY_AUTH_MODE=token. It is the only lock: Ray 2.60 turns a node address of
# 127.0.0.1 into this machine's own address (`resolve_ip_for_localhost` in ray/scripts/
# scripts.py) and its GCS, raylets and agents listen on every interface; only the
# dashboard and job API stay on 127.0.0.1.
set -euo pipefail

DIR="${LOCAL_CLUSTER_DIR:-/tmp/trial-local-cluster}"
PORT="${RAY_PORT:-6390}"
DASHBOARD_PORT="${RAY_DASHBOARD_PORT:-8275}"
NODES="${RAY_EXTRA_NODES:-1}"
RAY="${RAY:-ray}"
export RAY_AUTH_MODE=token
# `ray start --block` drains its node for up to 30 s on SIGTERM; these nodes serve nobody.
export RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=0
# Inherited by every Ray process of these nodes: Ray Train's placement group cleaner looks
# its cluster up by address, and with two clusters on one machine "auto" finds both.
export RAY_ADDRESS="127.0.0.1:$PORT"

common=(
  --num-cpus="${RAY_NODE_CPUS:-1}"
  --object-store-memory=$(( ${RAY_OBJECT_STORE_MB:-256} * 1024 * 1024 ))
  --node-manager-port=0 --object-manager-port=0 --min-worker-port=0 --max-worker-port=0
  --dashboard-agent-listen-port=0 --dashboard-agent-grpc-port=0 --runtime-env-agent-port=0
  --metrics-export-port=0 --disable-usage-stats --block
)

# Start one node: `ray start --block` in a new session (setsid execs it: same pid).
launch() {
  local name="$1"; shift
  mkdir -p "$DIR/$name"
  setsid "$RAY" start "${common[@]}" --temp-dir="$DIR/$name" "$@" >"$DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$DIR/$name.pid"
  wait_for "$name" "grep -qs 'Ray runtime started' '$DIR/$name.log'"
}

# Wait until CONDITION holds, while NAME's `ray start` still runs; on failure stop everything.
wait_for() {
  local name="$1" condition="$2" waited=0
  until eval "$condition"; do
    if ! kill -0 "$(cat "$DIR/$name.pid")" 2>/dev/null || (( waited >= 180 )); then
      echo "local-cluster: $name did not come up; the end of $DIR/$name.log:" >&2
      tail -n 30 "$DIR/$name.log" >&2
      stop_all
      exit 1
    fi
    sleep 1; waited=$(( waited + 1 ))
  done
}

# How many nodes the head counts as active.
active_nodes() {
  "$RAY" status --address="$RAY_ADDRESS" 2>/dev/null \
    | awk '/^Active:/ {on=1; next} /^[A-Z]/ {on=0} on && /node_/ {n++} END {print n+0}'
}

# Stop one node: SIGTERM to its `ray start --block`, which then stops the node's processes;
# then SIGKILL whatever its session still holds (a worker its raylet had not reaped yet).
halt() {
  local pidfile="$1" pid
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  # The session's id is the pid of its leader, the `ray start` above.
  pkill -KILL -s "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

stop_all() {
  local pidfile
  # The extra nodes first, the head last.
  for pidfile in "$DIR"/node*.pid "$DIR/head.pid"; do
    if [[ -f "$pidfile" ]]; then halt "$pidfile"; fi
  done
}

case "${1:-start}" in
  start)
    if [[ -f "$DIR/head.pid" ]] && kill -0 "$(cat "$DIR/head.pid")" 2>/dev/null; then
      echo "local-cluster: already running in $DIR (head pid $(cat "$DIR/head.pid")); stop it first" >&2
      exit 1
    fi
    mkdir -p "$DIR"
    launch head --head --port="$PORT" --include-dashboard=true \
      --dashboard-host=127.0.0.1 --dashboard-port="$DASHBOARD_PORT" \
      --ray-client-server-port="${RAY_CLIENT_PORT:-10391}"
    for i in $(seq 1 "$NODES"); do
      launch "node$i" --address="$RAY_ADDRESS"
    done
    # A node's `ray start` is done before the head has seen the node's first heartbeat.
    wait_for head "(( \$(active_nodes) >= $(( NODES + 1 )) ))"
    echo "local-cluster: head $RAY_ADDRESS (dashboard http://127.0.0.1:$DASHBOARD_PORT) + $NODES node(s), $(( NODES + 1 )) x ${RAY_NODE_CPUS:-1} CPUs; logs in $DIR"
    ;;
  stop)
    stop_all
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
