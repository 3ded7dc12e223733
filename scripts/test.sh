#!/usr/bin/env bash
# The README's second command (and CI's, through .ci/run): installs what is missing,
# builds, and runs every test with CTest, then every fuzz target for FUZZ_SECONDS (default
# 60) each (scripts/fuzz.sh; FUZZ_SECONDS=0 skips them).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1  # containers run as root
ctest --test-dir build --output-on-failure -j "$(nproc)"
if [ "${FUZZ_SECONDS:-60}" != 0 ]; then
  FUZZ_JOBS=${FUZZ_JOBS:-4} scripts/fuzz.sh "${FUZZ_SECONDS:-60}"  # 8 targets in 2 rounds
fi
