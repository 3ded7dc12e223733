#!/usr/bin/env bash
# GPU check of sharded checkpoints, streamed exports and ZeRO-Offload (device tool, one GPU):
# builds with CUDA (scripts/gpu-setup.sh), runs their unit tests (the CUDA ones among them),
# then the tiny fixture job on the GPU at ZeRO-3 with and without parallel.offload_optimizer,
# and the offloaded run resumed from its step-6 checkpoint; prints each run's losses.
# Usage there: source .devdeps/setup.sh && scripts/gpu-offload.sh
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/gpu-setup.sh
source scripts/gpu-setup.sh
export QTRAIN_NO_BROWSER=1
build/tests/qtrain_tests --gtest_filter='*Sharded*:Estimate*:Checkpoint*:Export.Large*:*FusedFakeQuant*' > "$OUT/tests.log" 2>&1
echo "tests exit $?"; grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]|SKIPPED \]|Failure" -A3 "$OUT/tests.log" | head -40
job="--config tests/fixtures/train_tiny.yaml --set model.device=cuda --set parallel.zero_stage=3 --set logging.progress=off"
losses() { python3 -c "import json,sys; print(sys.argv[1], [round(json.loads(l)['loss'],6) for l in open(sys.argv[2]) if '\"loss\"' in l and 'eval' not in l])" "$1" "$2/metrics.jsonl"; }
for name in device offload; do
  extra=$([ $name = offload ] && echo "--set parallel.offload_optimizer=true")
  build/qtrain $job $extra --set run.output_dir=/tmp/zero3_$name > "$OUT/$name.log" 2>&1 || { echo "$name failed"; tail -20 "$OUT/$name.log"; }
  losses $name /tmp/zero3_$name
  grep -E "peak|perplexity" "$OUT/$name.log" | head -3
done
build/qtrain $job --set parallel.offload_optimizer=true --set run.output_dir=/tmp/zero3_resumed \
  --set checkpoint.resume=/tmp/zero3_offload/checkpoints/step_00000006 > "$OUT/resumed.log" 2>&1 || { echo "resume failed"; tail -20 "$OUT/resumed.log"; }
losses resumed /tmp/zero3_resumed
