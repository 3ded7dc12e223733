#!/usr/bin/env bash
# The README's second command (and CI's, through .ci/run): installs what is missing,
# builds, and runs every test with CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1  # containers run as root
ctest --test-dir build --output-on-failure -j "$(nproc)"
