#!/usr/bin/env bash
# qtrain against the PyTorch reference on the same job (issue 7, docs/performance.md): the
# ~1.2B distillation of configs/gpu_distill_1b.yaml (random Llama-3.2-1B-shape teacher, student
# a copy, KL over the full vocabulary, seq 2048, global batch 16) on every GPU of the machine,
# through
#   qtrain (one MPI rank per GPU, NCCL) for each scheme of $QTRAIN_SCHEMES,
#   bench/torch_distill_reference.py eagerly for $EAGER_SCHEMES and under torch.compile for
#   $COMPILE_SCHEMES (DDP, one process per GPU);
# schemes: none, w4a16-g128, w8a8. Each run's steady tokens/s per GPU, MFU and peak memory are
# appended to runs/vs_pytorch.jsonl (kept, so that runs split over several commands on one
# machine add up; `rm` it to start over), then qtrain's ratios to each reference and each
# scheme's fake-quant overhead against qtrain without quantization are printed.
# Usage (GPU machine): source .devdeps/setup.sh && bench/run_vs_pytorch.sh [steps]
set -uo pipefail
cd "$(dirname "$0")/.."
steps="${1:-12}"
source scripts/gpu-setup.sh random-1b
gpus=$(nvidia-smi -L | wc -l)
out=runs/vs_pytorch.jsonl
for scheme in ${QTRAIN_SCHEMES-none w4a16-g128}; do
  rm -rf "runs/vs-$scheme"
  mpirun --oversubscribe -n "$gpus" build/qtrain --config configs/gpu_distill_1b.yaml --set run.output_dir="runs/vs-$scheme" \
    --set training.steps="$steps" --set "quant.rules=${QUANT_RULES[$scheme]}" --set quant.method=rtn \
    --set quant.calibration_sequences=8 --set quant.export_at_end=false --set logging.tensorboard=false \
    --set checkpoint.enabled=false > "$OUT/qtrain_$scheme.log" 2>&1 || { tail -3 "$OUT/qtrain_$scheme.log"; continue; }
  python3 bench/steady_metrics.py "runs/vs-$scheme/metrics.jsonl" --gpus "$gpus" --label bench=distill_step \
    --label impl=qtrain --label scheme="$scheme" | tee -a "$out"
done
reference() {  # scheme, extra flag
  python3 -m torch.distributed.run --standalone --nproc-per-node "$gpus" bench/torch_distill_reference.py --scheme "$1" \
    --steps "$steps" $2 2> "$OUT/pytorch_$1$2.log" | grep '"bench"' | tee -a "$out"
}
for scheme in ${EAGER_SCHEMES-none w4a16-g128}; do reference "$scheme" ""; done
for scheme in ${COMPILE_SCHEMES-none w4a16-g128}; do reference "$scheme" --compile; done
cp "$out" "$OUT/"
python3 - "$out" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows[(r["impl"], r["scheme"])] = r  # the latest run of each
base = rows.get(("qtrain", "none"))
for (impl, scheme), r in sorted(rows.items()):
    ours = rows.get(("qtrain", scheme))
    if impl != "qtrain" and ours:
        print(f"{scheme}: qtrain / {impl}: tokens/s x{ours['tokens_per_second'] / r['tokens_per_second']:.3f} "
              f"({ours['tokens_per_second_per_gpu']} vs {r['tokens_per_second_per_gpu']} per GPU, MFU {ours['mfu']:.3f} vs "
              f"{r['mfu']:.3f}), peak memory x{ours['peak_memory_gib'] / r['peak_memory_gib']:.3f}")
    if impl == "qtrain" and scheme != "none" and base:
        print(f"{scheme}: qtrain fake-quant overhead {100 * (base['tokens_per_second'] / r['tokens_per_second'] - 1):.1f}% "
              f"(tokens/s x{r['tokens_per_second'] / base['tokens_per_second']:.3f}, memory x{r['peak_memory_gib'] / base['peak_memory_gib']:.3f})")
PY
