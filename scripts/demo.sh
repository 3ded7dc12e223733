#!/usr/bin/env bash
# The README's first command: installs what is missing, builds, and runs the main job on
# its embedded default config (configs/demo.yaml) on the CPU, with 2 MPI ranks.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1  # containers run as root
mpirun --oversubscribe -n 2 build/qtrain "$@"
