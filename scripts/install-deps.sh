#!/usr/bin/env bash
# Installs, with apt, what qtrain needs to build and test on Debian 12 / Ubuntu 24.04.
# Only packages that are missing are installed; nothing is downloaded otherwise.
# libopenblas0-openmp: libtorch-dev alone pulls in the reference BLAS (libblas3), with which
# training on the CPU is about 10x slower; OpenBLAS then provides libblas.so.3 (alternatives),
# built for the OpenMP runtime that LibTorch uses.
# chromium: the run report's test opens report.html in headless Chromium (docs/report.md).
# clang, libclang-rt-dev: the fuzz targets (scripts/fuzz.sh): libFuzzer, ASan and UBSan are
# compiler-rt's, which clang only recommends.
set -euo pipefail
pkgs=(build-essential cmake ninja-build ccache pkg-config
      libtorch-dev libopenblas0-openmp libyaml-cpp-dev libhdf5-dev libboost-program-options-dev
      nlohmann-json3-dev libgtest-dev libgmock-dev
      libopenmpi-dev openmpi-bin
      libpcre2-dev libsentencepiece-dev sentencepiece libutf8proc-dev libxxhash-dev
      zlib1g-dev iproute2
      chromium clang libclang-rt-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
