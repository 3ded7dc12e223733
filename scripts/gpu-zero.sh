#!/usr/bin/env bash
# GPU check of ZeRO-2/3 and activation checkpointing (device tool, any number of GPUs):
# builds with CUDA (scripts/gpu-setup.sh), runs the sharding and fused-kernel tests, then
# the 1.2B distillation of configs/gpu_distill_1b.yaml at ZeRO stages 0 and 3, with and
# without activation checkpointing, on every GPU (one rank each; on one GPU stage 3 shards
# nothing but gathers in bf16 and frees each layer): tokens/s, MFU, measured peak memory
# against the --dry-run estimate, and how closely the losses follow stage 0's.
# Usage there: source .devdeps/setup.sh && scripts/gpu-zero.sh [steps] [tests|runs|all]
# QTRAIN_EXTRA adds --set options to every run (the random teacher's job is KD of a copy:
# pass "--set distill.alpha=1" for a loss that a student gathered in bf16, identical to the
# bf16 teacher, does not make exactly 0); VARIANTS picks runs (default: all five).
set -uo pipefail
cd "$(dirname "$0")/.."
steps="${1:-8}"
what="${2:-all}"
# shellcheck source=scripts/gpu-setup.sh
source scripts/gpu-setup.sh "$([ "$what" = tests ] || echo random-1b)"
export QTRAIN_NO_BROWSER=1
if [ "$what" != runs ]; then
  build/tests/qtrain_tests --gtest_filter='*ShardedModel*:*FusedFakeQuant*:*FusedLayers*:*FusedLogitLoss*:Estimate*' \
    > "$OUT/tests.log" 2>&1
  echo "CUDA and sharding tests exit $?"; grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]|SKIPPED \]" "$OUT/tests.log" | head -20
fi
[ "$what" != tests ] || exit 0
gpus=$(nvidia-smi -L | wc -l)
declare -A OPTIONS=([zero0]="" [zero0_again]="" [zero0_ac]="--set training.activation_checkpointing=true"
                   [zero3]="--set parallel.zero_stage=3"
                   [zero3_ac]="--set parallel.zero_stage=3 --set training.activation_checkpointing=true")
for name in ${VARIANTS:-zero0 zero0_again zero0_ac zero3 zero3_ac}; do
  extra="${OPTIONS[$name]} ${QTRAIN_EXTRA:-}"
  rm -rf "runs/$name"
  # shellcheck disable=SC2086
  mpirun --oversubscribe -n "$gpus" build/qtrain --config configs/gpu_distill_1b.yaml --set run.output_dir="runs/$name" \
    --set training.steps="$steps" --set checkpoint.enabled=false $extra 2>&1 | grep -E "error|step .* student" | head -3
  cp "runs/$name/metrics.jsonl" "$OUT/metrics_$name.jsonl"
  # shellcheck disable=SC2086
  mpirun --oversubscribe -n "$gpus" build/qtrain --config configs/gpu_distill_1b.yaml $extra --dry-run | grep "total about" \
    | sed "s/^/$name estimate: /"
done
python3 - "$OUT" "$gpus" <<'PY'
import json, sys, os
out, gpus = sys.argv[1], int(sys.argv[2])
runs = {}
for name in ["zero0", "zero0_again", "zero0_ac", "zero3", "zero3_ac"]:
    path = os.path.join(out, f"metrics_{name}.jsonl")
    if os.path.exists(path):
        runs[name] = [json.loads(l) for l in open(path) if '"loss"' in l]
base = runs.get("zero0")
for name, rows in runs.items():
    steady = rows[3:] or rows
    tps = sum(r["tokens_per_second"] for r in steady) / len(steady)
    mfu = sum(r.get("mfu", 0) for r in steady) / len(steady)
    peak = max(r["peak_memory_bytes"] for r in rows)
    line = f"{name}: {gpus} GPU(s), tokens/s {tps:.0f}, MFU {mfu:.3f}, peak {peak / 2**30:.1f} GiB"
    if base and name != "zero0":
        btps = sum(r["tokens_per_second"] for r in (base[3:] or base)) / len(base[3:] or base)
        bpeak = max(r["peak_memory_bytes"] for r in base)
        worst = max(abs(x["loss"] - y["loss"]) / abs(x["loss"]) for x, y in zip(base, rows))
        line += f" ({tps / btps:.3f}x tokens/s, {peak / bpeak:.3f}x memory of zero0; losses within {worst:.2e} relative)"
    print(line)
PY
