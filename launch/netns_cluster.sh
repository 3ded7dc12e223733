#!/usr/bin/env bash
# Two "hosts" on this one machine, for testing multi-node runs without a cluster: network
# namespaces <prefix>0 and <prefix>1 (each with its own loopback and UTS name), joined
# by a veth pair on a private test subnet, and Open MPI started across them over TCP: mpirun
# runs in host0, and reaches host1 through launch/netns_rsh.sh, its rsh agent, which starts
# Open MPI's daemon there with `ip netns exec` instead of ssh. Needs root (CAP_SYS_ADMIN)
# and iproute2; the namespaces are removed on exit.
# Usage: launch/netns_cluster.sh RANKS_PER_HOST COMMAND [ARGS...]
#   e.g. launch/netns_cluster.sh 2 build/qtrain --config CONFIG.yaml --set parallel.zero_stage=3
# Exit status: the command's; 77 when namespaces cannot be made here (tests skip on it).
set -euo pipefail
cd "$(dirname "$0")/.."
per_host="$1"
shift
prefix="${QTRAIN_NETNS_PREFIX:-qtn$$}"  # unique per run: concurrent clusters do not clash
subnet="${QTRAIN_NETNS_SUBNET:-10.231.77}"  # the two hosts are .1 and .2; nothing else is on it
hosts=("${prefix}0" "${prefix}1")

cleanup() {
  for h in "${hosts[@]}"; do ip netns del "$h" 2>/dev/null || true; done
}
cleanup
if ! ip netns add "${hosts[0]}" 2>/dev/null; then
  echo "netns_cluster: cannot make network namespaces here (needs root and iproute2)" >&2
  exit 77
fi
trap cleanup EXIT
ip netns add "${hosts[1]}"
ip link add "${prefix}-v0" netns "${hosts[0]}" type veth peer name "${prefix}-v1" netns "${hosts[1]}"
for i in 0 1; do
  ip -n "${hosts[$i]}" link set lo up
  ip -n "${hosts[$i]}" addr add "$subnet.$((i + 1))/24" dev "${prefix}-v$i"
  ip -n "${hosts[$i]}" link set "${prefix}-v$i" up
done

# mpirun in host0; the daemon of host1 through the rsh agent. Only TCP between ranks (no
# shared memory, as between real nodes), only on the veth interfaces.
export QTRAIN_NETNS_MAP="$subnet.1=${hosts[0]} $subnet.2=${hosts[1]}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
set +e
ip netns exec "${hosts[0]}" unshare --uts sh -c 'hostname "$0"; exec "$@"' "${hosts[0]}" \
  mpirun --mca plm_rsh_agent "$PWD/launch/netns_rsh.sh" --mca btl tcp,self \
  --mca btl_tcp_if_include "$subnet.0/24" --mca oob_tcp_if_include "$subnet.0/24" \
  -x QTRAIN_NETNS_MAP -x PATH ${LD_LIBRARY_PATH:+-x LD_LIBRARY_PATH} --oversubscribe \
  -H "$subnet.1:$per_host,$subnet.2:$per_host" -n $((2 * per_host)) "$@"
status=$?
set -e
exit $status
