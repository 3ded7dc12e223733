#!/usr/bin/env bash
# Run on the development machine before a GPU run. Puts into .devdeps/ (git-ignored) the
# Debian packages the GPU machine lacks for the tokenizers (data/): PCRE2, SentencePiece,
# utf8proc and xxHash, runtime libraries and headers. .devdeps/setup.sh (copied there by
# ../shared/device/fetch-deps.sh) unpacks every .deb in the folder into /opt/devdeps once per
# machine (it skips the unpacking when /opt/devdeps/.done exists) and puts /opt/devdeps/usr
# on CMAKE_PREFIX_PATH, where cmake/Dependencies.cmake finds them.
set -euo pipefail
root="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)"
mkdir -p "$root/.devdeps"
cd "$root/.devdeps"
pkgs=(libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3
      libsentencepiece-dev libsentencepiece0
      libutf8proc-dev libutf8proc2
      libxxhash-dev libxxhash0)
for p in "${pkgs[@]}"; do
  ls "${p}"_*.deb >/dev/null 2>&1 || apt-get download "$p" 2>&1 | grep -v "unsandboxed" || true
  ls "${p}"_*.deb >/dev/null 2>&1 || { echo "fetch-device-debs: could not download $p" >&2; exit 1; }
done
[ -f setup.sh ] || echo "fetch-device-debs: .devdeps/setup.sh is missing; run ../shared/device/fetch-deps.sh too" >&2
ls -la "$root/.devdeps"
