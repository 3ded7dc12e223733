#!/usr/bin/env bash
# Fake-quant overhead of a GPU training step (issue 5, docs/performance.md): the ~1.2B
# distillation of configs/gpu_distill_1b.yaml on one GPU, run three times in this command —
# no quantization, W4A16 g128 weights on every decoder linear, W8A8 (static per-tensor
# activations, calibrated on 8 sequences) — and the steady-state tokens/s, MFU and peak memory
# of each as ratios against the first. Setup (PTQ, calibration) is outside the timed steps.
# Usage (GPU machine): source .devdeps/setup.sh && bench/run_fake_quant.sh [steps]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
steps="${1:-12}"
export OMPI_MCA_plm_rsh_agent=false PYTHONUNBUFFERED=1
[ -x build/qtrain ] || scripts/build.sh > "$OUT/build.log" 2>&1 || { grep -E "error|FAILED" -A6 "$OUT/build.log" | head -60; exit 1; }
[ -d runs/random-1b/teacher ] || python3 scripts/make_random_teacher.py runs/random-1b --tokens 3000000 2>&1 | grep -v Warn
declare -A rules=(
  [none]="[]"
  [w4a16-g128]="[lm_head=none, 're:model\\.layers\\..*=w4a16-g128']"
  [w8a8]="[lm_head=none, 're:model\\.layers\\..*=w8a8']")
for name in none w4a16-g128 w8a8; do
  rm -rf "runs/fq-$name"
  build/qtrain --config configs/gpu_distill_1b.yaml --set run.output_dir="runs/fq-$name" --set training.steps="$steps" \
    --set "quant.rules=${rules[$name]}" --set quant.method=rtn --set quant.calibration_sequences=8 \
    --set quant.export_at_end=false --set logging.tensorboard=false 2>&1 | tail -2
  cp "runs/fq-$name/metrics.jsonl" "$OUT/metrics_fq_$name.jsonl"
done
python3 - "$OUT" <<'PY'
import json, os, sys
def steady(name):
    rows = [json.loads(l) for l in open(os.path.join(sys.argv[1], f"metrics_fq_{name}.jsonl")) if '"loss"' in l]
    s = rows[4:]  # the first steps include allocator growth and cuBLAS autotuning
    return (sum(r["tokens_per_second"] for r in s) / len(s), sum(r.get("mfu", 0) for r in s) / len(s),
            max(r["peak_memory_bytes"] for r in rows) / 2**30)
base = steady("none")
for name in ("none", "w4a16-g128", "w8a8"):
    t, m, g = steady(name)
    print(json.dumps({"bench": "fake_quant_step", "scheme": name, "tokens_per_second": round(t),
                      "mfu": round(m, 4), "peak_memory_gib": round(g, 2),
                      "tokens_per_second_ratio": round(t / base[0], 4), "overhead_percent": round(100 * (base[0] / t - 1), 2),
                      "memory_ratio": round(g / base[2], 4)}))
PY
