#!/usr/bin/env bash
# qtrain against the PyTorch reference on the same job (issue 7, docs/performance.md): the
# ~1.2B distillation of configs/gpu_distill_1b.yaml (random Llama-3.2-1B-shape teacher, student
# a copy, KL over the full vocabulary, seq 2048, global batch 16) on every GPU of the machine,
# with no quantization and with W4A16 g128 fake quantization, through
#   qtrain (one MPI rank per GPU, NCCL), bench/torch_distill_reference.py eager, and the same
#   under torch.compile (DDP, one process per GPU);
# prints tokens/s per GPU, MFU and peak memory of each, and qtrain's ratio to each reference.
# Usage (GPU machine): source .devdeps/setup.sh && bench/run_vs_pytorch.sh [steps]
set -uo pipefail
cd "$(dirname "$0")/.."
steps="${1:-12}"
source scripts/gpu-setup.sh random-1b
gpus=$(nvidia-smi -L | wc -l)
out="$OUT/vs_pytorch.jsonl"; : > "$out"
declare -A rules=([none]="[]" [w4a16-g128]="[lm_head=none, 're:model\\.layers\\..*=w4a16-g128']")
for scheme in none w4a16-g128; do
  rm -rf "runs/vs-$scheme"
  mpirun --oversubscribe -n "$gpus" build/qtrain --config configs/gpu_distill_1b.yaml --set run.output_dir="runs/vs-$scheme" \
    --set training.steps="$steps" --set "quant.rules=${rules[$scheme]}" --set quant.method=rtn \
    --set quant.export_at_end=false --set logging.tensorboard=false --set checkpoint.enabled=false \
    > "$OUT/qtrain_$scheme.log" 2>&1
  python3 bench/steady_metrics.py "runs/vs-$scheme/metrics.jsonl" --gpus "$gpus" --label bench=distill_step \
    --label impl=qtrain --label scheme="$scheme" >> "$out"
  for compile in "" --compile; do
    python3 -m torch.distributed.run --standalone --nproc-per-node "$gpus" bench/torch_distill_reference.py --scheme "$scheme" \
      --steps "$steps" $compile 2> "$OUT/pytorch_${scheme}${compile}.log" | grep '"bench"' >> "$out"
  done
done
cat "$out"
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for scheme in ("none", "w4a16-g128"):
    ours = [r for r in rows if r["scheme"] == scheme and r["impl"] == "qtrain"]
    for ref in (r for r in rows if r["scheme"] == scheme and r["impl"] != "qtrain"):
        if ours:
            print(f"{scheme}: qtrain / {ref['impl']}: tokens/s x{ours[0]['tokens_per_second'] / ref['tokens_per_second']:.3f}, "
                  f"peak memory x{ours[0]['peak_memory_gib'] / ref['peak_memory_gib']:.3f}")
PY
