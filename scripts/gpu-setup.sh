# Sourced by the GPU-machine scripts (scripts/gpu-train.sh, bench/run_fake_quant.sh): builds
# into build/ unless qtrain is there, and, when called with `random-1b`, makes the random
# ~1.2B teacher and its tokens (scripts/make_random_teacher.py) unless runs/random-1b holds
# them. Logs go to $OUT.
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
export OMPI_MCA_plm_rsh_agent=false PYTHONUNBUFFERED=1  # one node: no ssh (the machine has none)
if [ ! -x build/qtrain ]; then
  scripts/build.sh -DCMAKE_CUDA_ARCHITECTURES=90 > "$OUT/build.log" 2>&1 \
    || { grep -E "error|FAILED" -A6 "$OUT/build.log" | head -60; exit 1; }
fi
[ "${1:-}" != random-1b ] || [ -d runs/random-1b/teacher ] || python3 scripts/make_random_teacher.py runs/random-1b --tokens 3000000 2>&1 | grep -v Warn
# The fake-quant rules of the GPU benchmarks by scheme: every decoder linear quantized,
# lm_head (and the embeddings) left in bf16.
declare -A QUANT_RULES=(
  [none]="[]"
  [w4a16-g128]="[lm_head=none, 're:model\\.layers\\..*=w4a16-g128']"
  [w8a8]="[lm_head=none, 're:model\\.layers\\..*=w8a8']")
