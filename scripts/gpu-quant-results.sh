#!/usr/bin/env bash
# The GPU quantization table of docs/results.md, in one command on the GPU machine: trains
# the ~66M teacher of configs/gpu_teacher.yaml on the demo corpus, then runs
# scripts/quant-results.sh on it at W4A16 g128 and W8A8 — RTN, GPTQ, SmoothQuant, and QAT + KD
# (configs/gpu_quant_results.yaml) on one GPU, every model on the whole of val.h5 in windows
# of 512. The token files come from this machine: scripts/prepare-demo-data.sh, then carry
# .cache/demo (train.h5 and val.h5 only; the device tool's `carry`). The one-shot PTQ rows
# (qtrain quantize) run on the machine's CPUs: same arithmetic, and RTN/GPTQ of a 66M model
# take seconds there.
# Usage (GPU machine): source .devdeps/setup.sh && scripts/gpu-quant-results.sh
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-setup.sh
teacher=runs/gpu-teacher/teacher
if [ ! -f "$teacher/model.safetensors" ]; then
  build/qtrain --config configs/gpu_teacher.yaml 2>&1 | grep -E "^train .*steps|perplexity|error" | tail -4
  run=runs/gpu-teacher/run/checkpoints
  last="$run/$(cat "$run/latest")"
  mkdir -p "$teacher"
  cp "$last/config.json" "$last/model.safetensors" tests/fixtures/tokenizer/gpt2/tokenizer.json "$teacher/"
  cp runs/gpu-teacher/run/metrics.jsonl "$OUT/metrics_gpu_teacher.jsonl"
fi
TEACHER=$teacher SCHEMES="w4a16-g128 w8a8" QAT_CONFIG=configs/gpu_quant_results.yaml RANKS=1 DEVICE=cuda PTQ_DEVICE=cpu \
  SEQ_LEN=512 MAX_WINDOWS=0 OUT_DIR=runs/gpu-quant-results scripts/quant-results.sh build | tee "$OUT/gpu_quant_results.md"
tar czf "$OUT/gpu_quant_results_logs.tgz" runs/gpu-quant-results/*.log runs/gpu-quant-results/qat-*/metrics.jsonl 2>/dev/null
