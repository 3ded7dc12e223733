#!/usr/bin/env bash
# Configures and builds qtrain (Release, Ninja, ccache when present) into build/ (or BUILD_DIR).
# Usage: [BUILD_DIR=DIR] scripts/build.sh [extra cmake args...]
set -euo pipefail
cd "$(dirname "$0")/.."
build="${BUILD_DIR:-build}"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" > build-configure.log 2>&1 \
  || { cat build-configure.log >&2; exit 1; }
rm -f build-configure.log
cmake --build "$build" -j "$(nproc)"
