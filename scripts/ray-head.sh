#!/usr/bin/env bash
# Start (or stop) a local Ray head for `ray job submit`: token auth on, dashboard and job
# API on 127.0.0.1. (Ray 2.60 resolves --node-ip-address=127.0.0.1 to the machine's own
# address for the GCS and raylet ports, so those are reachable beyond loopback: the token
# is what keeps others out; firewall ports 6379 and up if the machine is on a shared network.)
#   bash scripts/ray-head.sh start     # head on 127.0.0.1:6379, dashboard/jobs on http://127.0.0.1:8265
#   bash scripts/ray-head.sh stop
# The CLI and `ray job submit` read the token from ~/.ray/auth_token. To open the head to
# other machines deliberately, change --node-ip-address/--dashboard-host to the
# machine's address and give the token only to the people who should submit jobs.
set -euo pipefail
case "${1:-start}" in
  start)
    export RAY_AUTH_MODE=token
    ray start --head \
      --node-ip-address=127.0.0.1 --port="${RAY_PORT:-6379}" \
      --dashboard-host=127.0.0.1 --dashboard-port="${RAY_DASHBOARD_PORT:-8265}" \
      ${RAY_NUM_CPUS:+--num-cpus="$RAY_NUM_CPUS"} --disable-usage-stats
    ;;
  stop)
    ray stop
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
