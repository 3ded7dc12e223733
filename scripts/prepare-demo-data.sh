#!/usr/bin/env bash
# Builds the demo's token files: fetches the corpus (scripts/fetch-demo-corpus.sh), then
# tokenizes it with qdata on every core, EOS after each document, 2% of the documents (by a
# hash of their text) held out for validation:
#   .cache/demo/train.h5  .cache/demo/val.h5   (and summary.txt, qdata's summary line)
# Idempotent: nothing is redone when both files exist. Needs a built qdata.
# Usage: scripts/prepare-demo-data.sh [BUILD_DIR] [CACHE_DIR]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build}"
cache="${2:-$root/.cache/corpus}"
out="$root/.cache/demo"

if [ -f "$out/train.h5" ] && [ -f "$out/val.h5" ]; then
  echo "prepare-demo-data: $out/train.h5 and $out/val.h5 exist; nothing to do"
  exit 0
fi
[ -x "$build/qdata" ] || { echo "prepare-demo-data: $build/qdata not built (ninja -C $build qdata)" >&2; exit 1; }
"$root/scripts/fetch-demo-corpus.sh" "$cache"
mkdir -p "$out"
"$build/qdata" --tokenizer "$cache/gpt2/tokenizer.json" --input "$cache/text" \
  --output "$out/train.h5" --val-output "$out/val.h5" --val-fraction 0.02 --append-eos | tee "$out/summary.txt"
