#!/usr/bin/env bash
# Open MPI's rsh agent for launch/netns_cluster.sh: called as `netns_rsh.sh [ssh options]
# HOST COMMAND...` where ssh would be, it runs COMMAND in the network namespace that
# QTRAIN_NETNS_MAP ("ADDRESS=NAMESPACE ...") gives HOST, under that host's own UTS name.
set -euo pipefail
while [[ "${1:-}" == -* ]]; do shift; done  # ssh options Open MPI may pass (-x, -T, ...)
host="$1"
shift
namespace=""
for pair in ${QTRAIN_NETNS_MAP:-}; do
  [ "${pair%%=*}" = "$host" ] && namespace="${pair#*=}"
done
[ -n "$namespace" ] || { echo "netns_rsh: no namespace for host $host in QTRAIN_NETNS_MAP" >&2; exit 2; }
exec ip netns exec "$namespace" unshare --uts sh -c 'hostname "$0"; exec /bin/sh -c "$1"' "$namespace" "$*"
