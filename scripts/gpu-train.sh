#!/usr/bin/env bash
# GPU training check (device tool): builds, makes a random ~1.2B teacher, and runs
# configs/gpu_distill_1b.yaml on 1 GPU, and on N GPUs with NCCL when the machine has them;
# prints tokens/s, MFU, memory and how closely the loss curves agree.
# Usage there: source .devdeps/setup.sh && scripts/gpu-train.sh [steps]
set -uo pipefail
cd "$(dirname "$0")/.."
steps="${1:-30}"
source scripts/gpu-setup.sh random-1b
gpus=$(nvidia-smi -L | wc -l)
for n in 1 $([ "$gpus" -ge 2 ] && echo 2); do
  rm -rf runs/gpu$n
  mpirun --oversubscribe -n $n build/qtrain --config configs/gpu_distill_1b.yaml --set run.output_dir=runs/gpu$n \
    --set training.steps=$steps 2>&1 | tail -4
  cp runs/gpu$n/metrics.jsonl "$OUT/metrics_gpu$n.jsonl"
done
python3 - "$OUT" <<'PY'
import json, sys, glob, os
runs = {}
for f in sorted(glob.glob(os.path.join(sys.argv[1], "metrics_gpu*.jsonl"))):
    rows = [json.loads(l) for l in open(f) if '"loss"' in l]
    runs[f] = rows
    steady = rows[5:]
    tps = sum(r["tokens_per_second"] for r in steady) / len(steady)
    mfu = sum(r.get("mfu", 0) for r in steady) / len(steady)
    print(f"{os.path.basename(f)}: {len(rows)} steps, tokens/s {tps:.0f} (per GPU {tps / int(f[-7]):.0f}), "
          f"MFU {mfu:.3f}, peak memory {max(r['peak_memory_bytes'] for r in rows) / 2**30:.1f} GiB, "
          f"overlapped buckets {rows[-1]['buckets_overlapped']}, final loss {rows[-1]['loss']:.5f}")
if len(runs) == 2:
    a, b = runs.values()
    worst = max(abs(x["loss"] - y["loss"]) / max(abs(x["loss"]), 1e-12) for x, y in zip(a, b))
    print(f"1 vs 2 GPUs: max relative loss difference over {len(a)} steps: {worst:.2e}")
PY
python3 - <<'PY'
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
import glob
for d in sorted(glob.glob("runs/gpu*/tensorboard")):
    acc = EventAccumulator(d); acc.Reload()
    tags = acc.Tags()["scalars"]
    print(d, "TensorBoard reads", len(tags), "scalar tags; train/loss has", len(acc.Scalars("train/loss")), "points")
PY
