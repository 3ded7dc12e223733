#!/usr/bin/env bash
# Fake-quant overhead of a GPU training step (issue 5, docs/performance.md): the ~1.2B
# distillation of configs/gpu_distill_1b.yaml on one GPU, in one command, with no
# quantization (the baseline), then W4A16 g128 weights and W8A8 (int8 channel weights,
# static per-tensor int8 activations calibrated on 8 sequences) on every decoder linear,
# each with the fused CUDA kernel (quant/cuda/fake_quant_kernel.cu) and with the unfused
# LibTorch form (QTRAIN_FAKE_QUANT_KERNEL=torch). Prints steady-state tokens/s, MFU and peak
# memory of each run as ratios against the baseline. PTQ and calibration are not timed.
# Usage (GPU machine): source .devdeps/setup.sh && bench/run_fake_quant.sh [steps]
set -uo pipefail
cd "$(dirname "$0")/.."
steps="${1:-12}"
source scripts/gpu-setup.sh random-1b
runs=(none:fused w4a16-g128:fused w4a16-g128:torch w8a8:fused w8a8:torch)
for run in "${runs[@]}"; do
  scheme=${run%%:*} kernel=${run##*:}
  rm -rf "runs/fq-$scheme-$kernel"
  QTRAIN_FAKE_QUANT_KERNEL=$kernel build/qtrain --config configs/gpu_distill_1b.yaml \
    --set run.output_dir="runs/fq-$scheme-$kernel" --set training.steps="$steps" \
    --set "quant.rules=${QUANT_RULES[$scheme]}" --set quant.method=rtn --set quant.calibration_sequences=8 \
    --set quant.export_at_end=false --set logging.tensorboard=false --set checkpoint.enabled=false 2>&1 | tail -2
  cp "runs/fq-$scheme-$kernel/metrics.jsonl" "$OUT/metrics_fq_${scheme}_$kernel.jsonl"
done
for run in "${runs[@]}"; do
  scheme=${run%%:*} kernel=${run##*:}
  python3 bench/steady_metrics.py "$OUT/metrics_fq_${scheme}_$kernel.jsonl" --label bench=fake_quant_step \
    --label scheme="$scheme" --label kernel="$kernel"
done > "$OUT/fake_quant.jsonl"
python3 - "$OUT/fake_quant.jsonl" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
base = rows[0]
for r in rows:
    r.update(tokens_per_second_ratio=round(r["tokens_per_second"] / base["tokens_per_second"], 4),
             overhead_percent=round(100 * (base["tokens_per_second"] / r["tokens_per_second"] - 1), 2),
             memory_ratio=round(r["peak_memory_gib"] / base["peak_memory_gib"], 4))
    print(json.dumps(r))
PY
