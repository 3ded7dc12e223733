#!/usr/bin/env bash
# Generation latency and memory of an exported integer checkpoint against its bf16 model on
# one GPU (bench/bench_generate.cpp): prefill, per-token decode with the KV cache, tokens/s,
# peak CUDA memory, model bytes; JSON lines in $OUT/bench_generate.jsonl and a summary.
# Usage (GPU machine, after scripts/build.sh):
#   bench/run_generate.sh BF16_DIR EXPORTED_DIR [--prompt-len 512 --new-tokens 128 ...]
# To make the pair from a Hugging Face folder:
#   build/qtrain quantize --model BF16_DIR --calib tokens.h5 --scheme w4a16-g128 --output EXPORTED_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: $0 BF16_DIR EXPORTED_DIR [bench_generate options]" >&2; exit 2; }
reference=$1 quantized=$2
shift 2
bin=${BENCH_BIN:-build/bench/bench_generate}
out="${OUT:-/tmp}/bench_generate.jsonl"
: > "$out"
for prompt in 128 2048; do
  "$bin" --reference "$reference" --quantized "$quantized" --prompt-len "$prompt" "$@" | tee -a "$out"
done
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
runs = [r for r in rows if r["bench"] == "generate"]
for b, q in zip(runs[0::2], runs[1::2]):
    print(f"prompt {b['prompt_len']}: prefill {b['prefill_seconds']*1e3:.1f} -> {q['prefill_seconds']*1e3:.1f} ms, "
          f"decode {b['decode_tokens_per_second']:.1f} -> {q['decode_tokens_per_second']:.1f} tok/s, "
          f"peak {b['peak_memory_bytes']/2**30:.2f} -> {q['peak_memory_bytes']/2**30:.2f} GiB, "
          f"model {b['model_bytes']/2**30:.2f} -> {q['model_bytes']/2**30:.2f} GiB")
PY
