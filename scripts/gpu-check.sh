#!/usr/bin/env bash
# One command for the GPU machine (device tool): builds with CUDA LibTorch, runs the whole
# test suite, checks qtrain-written folders in transformers, evaluates a fixture on the GPU
# and runs the forward benchmark against transformers. Logs go to $OUT.
# Usage there: source .devdeps/setup.sh && scripts/gpu-check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
nvidia-smi -L
scripts/build.sh -DCMAKE_CUDA_ARCHITECTURES=90 > "$OUT/build.log" 2>&1 || { grep -E "error|FAILED|Error" -A6 "$OUT/build.log" | head -60; exit 1; }
grep -q "QTRAIN_WITH_CUDA:INTERNAL=ON\|CUDA + NCCL on" build/CMakeCache.txt build/*.log 2>/dev/null; true
export OMPI_MCA_plm_rsh_agent=false  # one node: no ssh needed (the machine has none)
export QTRAIN_NO_BROWSER=1  # no chromium there (no network): the report's browser test is CI's
ctest --test-dir build --output-on-failure -j 8 > "$OUT/ctest.log" 2>&1; echo "ctest exit $?"; tail -5 "$OUT/ctest.log"
s=build/test-scratch
python3 tests/fixtures/check_saved_in_transformers.py \
  "$s/Fixtures/RoundTrip.LoadSaveLoadIsExact/0/saved=llama_gqa_llama3" \
  "$s/Fixtures/RoundTrip.LoadSaveLoadIsExact/1/saved=llama_headdim_tied" \
  "$s/Fixtures/RoundTrip.LoadSaveLoadIsExact/2/saved=qwen2_bias" \
  "$s/Fixtures/RoundTrip.LoadSaveLoadIsExact/3/saved=mistral_linear" \
  "$s/HFCheckpoint.ModelSaveWritesShardsAndLeavesTiedHeadOut/sharded=llama_headdim_tied" \
  "$s/HFCheckpoint.SavingBf16ConvertsFloatsAndRecordsTheDtype/bf16=qwen2_bias" 2>&1 | grep -v Warning
for dt in fp32 bf16; do
  build/qeval --model tests/fixtures/llama_gqa_llama3 --data tests/fixtures/tokens.h5 --seq-len 64 --device cuda --dtype $dt --json
done
bench/run_forward.sh "$@"
