#!/bin/bash
# qtrain over several nodes without SLURM: Open MPI's mpirun with a hostfile, one rank per GPU.
#   launch/mpirun_multinode.sh launch/hostfile.example configs/qat_int4.yaml [--set ...]
# Variables: NCCL_SOCKET_IFNAME / OMPI_MCA_btl_tcp_if_include (the network to use), see
# launch/README.md.
set -euo pipefail
hostfile="${1:?usage: launch/mpirun_multinode.sh HOSTFILE CONFIG.yaml [qtrain options]}"
config="${2:?usage: launch/mpirun_multinode.sh HOSTFILE CONFIG.yaml [qtrain options]}"
shift 2
ranks=$(awk '!/^#/ && NF { for (i = 2; i <= NF; ++i) if ($i ~ /^slots=/) { sub("slots=", "", $i); n += $i } } END { print n }' "$hostfile")
qtrain="${QTRAIN_BIN:-$(dirname "$(readlink -f "$0")")/../build/qtrain}"
exec mpirun --hostfile "$hostfile" -n "$ranks" --map-by ppr:"${GPUS_PER_NODE:-8}":node --bind-to none \
  -x NCCL_NVLS_ENABLE=0 -x NCCL_DEBUG -x NCCL_SOCKET_IFNAME -x NCCL_IB_HCA -x OMP_NUM_THREADS \
  ${QTRAIN_MPIRUN_ARGS:-} "$qtrain" --config "$config" --set checkpoint.resume=auto "$@"
