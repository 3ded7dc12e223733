#!/usr/bin/env bash
# Tokenizer throughput on real text (docs/tokenizer.md, "Speed"): the first 20 MB of the
# kernel documentation in Debian's linux-doc-6.1, fetched once into .cache/qtrain-bench/
# (git-ignored), encoded on one thread and then on every core.
# Usage: bench/run_tokenizer.sh [BUILD_DIR] [TOKENIZER]
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
tokenizer="${2:-tests/fixtures/tokenizer/gpt2/tokenizer.json}"
cache=.cache/qtrain-bench
text="$cache/kernel-docs-20mb.txt"
if [ ! -s "$text" ]; then
  mkdir -p "$cache/deb"
  (cd "$cache/deb" && apt-get download linux-doc-6.1)
  dpkg -x "$cache"/deb/linux-doc-6.1_*.deb "$cache/deb/x"
  # head closes the pipe early on purpose; only the size of the result matters.
  (set +o pipefail; find "$cache/deb/x" -name '*.rst.gz' | sort | xargs zcat 2>/dev/null | head -c 20000000 > "$text")
  rm -rf "$cache/deb"
fi
"$build/bench/bench_tokenizer" "$tokenizer" "$text" --passes 3 --threads 1
"$build/bench/bench_tokenizer" "$tokenizer" "$text" --passes 2 --threads "$(nproc)"
