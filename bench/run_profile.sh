#!/usr/bin/env bash
# Where the time of a GPU distillation step goes (issue 7, docs/performance.md): the ~1.2B job
# of configs/gpu_distill_1b.yaml on one GPU for each variant of $VARIANTS (below), the last
# step profiled (logging.profile_step), no checkpoints; prints the
# steady tokens/s, MFU and peak memory (bench/steady_metrics.py, the profiled step left out)
# and bench/profile_summary.py's tables, and the same for the PyTorch reference
# (bench/torch_distill_reference.py --profile-step) when $TORCH_REFERENCE is set.
# Results under $OUT: profile_<scheme>-<kernels>.md, steady.jsonl, trace_none-fused.json.gz.
# Usage (GPU machine): source .devdeps/setup.sh && bench/run_profile.sh [steps]
set -uo pipefail
cd "$(dirname "$0")/.."
steps="${1:-8}"
source scripts/gpu-setup.sh random-1b
# A variant is SCHEME:KERNELS: fused (qtrain's CUDA kernels) or torch (their LibTorch forms:
# QTRAIN_MODEL_KERNELS, QTRAIN_LOSS_KERNEL and QTRAIN_FAKE_QUANT_KERNEL set to torch).
for variant in ${VARIANTS:-none:fused none:torch w4a16-g128:fused w8a8:fused}; do
  scheme=${variant%%:*} kernels=${variant##*:}
  dir="runs/profile-$scheme-$kernels"
  rm -rf "$dir"
  env $([ "$kernels" = torch ] && echo QTRAIN_MODEL_KERNELS=torch QTRAIN_LOSS_KERNEL=torch QTRAIN_FAKE_QUANT_KERNEL=torch) \
    build/qtrain --config configs/gpu_distill_1b.yaml --set run.output_dir="$dir" --set training.steps="$steps" \
    --set "quant.rules=${QUANT_RULES[$scheme]}" --set quant.method=rtn --set quant.calibration_sequences=8 \
    --set quant.export_at_end=false --set logging.tensorboard=false --set checkpoint.enabled=false \
    --set logging.profile_step="$steps" > "$OUT/qtrain_profile_$scheme-$kernels.log" 2>&1 \
    || { tail -5 "$OUT/qtrain_profile_$scheme-$kernels.log"; continue; }
  python3 bench/steady_metrics.py "$dir/metrics.jsonl" --skip 3 --drop-last 1 --label impl=qtrain --label scheme="$scheme" \
    --label kernels="$kernels" | tee -a "$OUT/steady.jsonl"
  trace=$(ls "$dir"/profile/trace_*.json)
  python3 bench/profile_summary.py "$trace" --top 40 > "$OUT/profile_$scheme-$kernels.md"
  head -16 "$OUT/profile_$scheme-$kernels.md"
  [ "$kernels" = fused ] && [ "$scheme" = none ] && gzip -c "$trace" > "$OUT/trace_$scheme-$kernels.json.gz"
done
if [ -n "${TORCH_REFERENCE:-}" ]; then
  python3 bench/torch_distill_reference.py --scheme none --steps "$steps" --profile-step "$steps" \
    --profile-out runs/profile-torch/trace.json 2> "$OUT/torch_profile.log" | tee -a "$OUT/steady.jsonl"
  python3 bench/profile_summary.py runs/profile-torch/trace.json --top 30 > "$OUT/profile_torch.md" && head -16 "$OUT/profile_torch.md"
fi
