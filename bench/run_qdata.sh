#!/usr/bin/env bash
# qdata throughput end to end (docs/qdata.md, "Throughput"): the demo corpus (English kernel
# documentation, fetched once by scripts/fetch-demo-corpus.sh) with GPT-2's tokenizer, on 1
# thread and then on every core, REPEATS runs each. Prints one JSON line per run:
# qdata's --json summary (seconds and MB/s exclude loading the tokenizer) plus the wall time
# of the whole process.
# Usage: bench/run_qdata.sh [BUILD_DIR] [REPEATS]   (THREADS="1 2 4" overrides 1..nproc;
#        COPIES=4 reads the corpus that many times over, for a longer run)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build}"
repeats="${2:-3}"
cache="$root/.cache/corpus"
"$root/scripts/fetch-demo-corpus.sh" "$cache" >&2
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
inputs=()
for _ in $(seq "${COPIES:-1}"); do inputs+=("$cache/text"); done
for threads in ${THREADS:-$(seq 1 "$(nproc)")}; do
  for _ in $(seq "$repeats"); do
    start=$(date +%s.%N)
    summary=$("$build/qdata" --tokenizer "$cache/gpt2/tokenizer.json" --input "${inputs[@]}" \
      --output "$out/tokens.h5" --append-eos --threads "$threads" --json)
    end=$(date +%s.%N)
    echo "$summary" | sed "s/}\$/,\"process_seconds\":$(awk "BEGIN { print $end - $start }")}/"
  done
done
