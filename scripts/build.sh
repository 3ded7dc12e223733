#!/usr/bin/env bash
# Configures and builds qtrain (Release, Ninja, ccache when present) into build/ (or BUILD_DIR).
# Usage: [BUILD_DIR=DIR] [BUILD_TARGETS="qtrain qeval"] scripts/build.sh [extra cmake args...]
# BUILD_TARGETS: the targets to build (default: all of them, tests and benchmarks included).
set -euo pipefail
cd "$(dirname "$0")/.."
build="${BUILD_DIR:-build}"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" > build-configure.log 2>&1 \
  || { cat build-configure.log >&2; exit 1; }
rm -f build-configure.log
targets=()
for t in ${BUILD_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$build" -j "$(nproc)" "${targets[@]}"
