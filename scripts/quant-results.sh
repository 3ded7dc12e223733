#!/usr/bin/env bash
# The quantization results table of docs/results.md on the demo teacher (scripts/demo.sh
# must have made .cache/demo/teacher and the token files): for each scheme, the FP teacher,
# round-to-nearest and GPTQ PTQ (qtrain quantize), SmoothQuant for W8A8, and QAT + KD
# (configs/quant_results.yaml), every model evaluated by qeval on the same 64 windows of 256
# tokens of .cache/demo/val.h5; the exported checkpoints are evaluated as integer weights.
# Usage: scripts/quant-results.sh [BUILD_DIR]   (prints a markdown table; logs in runs/quant-results/)
# The GPU table (scripts/gpu-quant-results.sh) runs the same steps with, in the environment:
#   TEACHER (HF folder), SCHEMES, QAT_CONFIG, RANKS, DEVICE, PTQ_DEVICE (qtrain quantize's),
#   SEQ_LEN, MAX_WINDOWS (0 = all), OUT_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
demo=.cache/demo out="${OUT_DIR:-runs/quant-results}"
teacher_dir="${TEACHER:-$demo/teacher}" schemes="${SCHEMES:-w4a16-g32 w8a8}" qat_config="${QAT_CONFIG:-configs/quant_results.yaml}"
ranks="${RANKS:-2}" device="${DEVICE:-auto}" ptq_device="${PTQ_DEVICE:-${DEVICE:-auto}}" seq_len="${SEQ_LEN:-256}" max_windows="${MAX_WINDOWS:-64}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$out"
ppl() {  # perplexity of a folder on the report's windows
  "$build/qeval" --model "$1" --data "$demo/val.h5" --seq-len "$seq_len" --batch-size 16 --max-windows "$max_windows" \
    --device "$device" --json | python3 -c 'import json,sys; print("%.2f" % json.load(sys.stdin)["perplexity"])'
}
teacher=$(ppl "$teacher_dir")
printf '| scheme | teacher (FP32) | RTN | GPTQ | SmoothQuant | QAT + KD (fake quant) | QAT + KD (exported) | recovery vs RTN |\n'
printf '| --- | --- | --- | --- | --- | --- | --- | --- |\n'
for scheme in $schemes; do
  rules=(--rule lm_head=none --rule "re:model\.layers\..*=$scheme")
  for method in rtn gptq $([ "$scheme" = w8a8 ] && echo smoothquant); do
    "$build/qtrain" quantize --model "$teacher_dir" --calib "$demo/train.h5" "${rules[@]}" --method "$method" \
      --seq-len "$seq_len" --calibration-sequences 16 --device "$ptq_device" --output "$out/$scheme-$method" \
      > "$out/$scheme-$method.log" 2>&1
  done
  rtn=$(ppl "$out/$scheme-rtn"); gptq=$(ppl "$out/$scheme-gptq")
  sq=$([ "$scheme" = w8a8 ] && ppl "$out/$scheme-smoothquant" || echo "—")
  rm -rf "$out/qat-$scheme"
  mpirun --oversubscribe -n "$ranks" "$build/qtrain" --config "$qat_config" \
    --set run.output_dir="$out/qat-$scheme" --set "quant.rules=[lm_head=none, 're:model\\.layers\\..*=$scheme']" \
    > "$out/qat-$scheme.log" 2>&1
  fake=$(sed -n 's/.*fake-quant student \([0-9.]*\), exported integer checkpoint \([0-9.]*\).*/\1/p' "$out/qat-$scheme.log")
  exported=$(ppl "$out/qat-$scheme/export")
  recovery=$(python3 -c "r,t,q=$rtn,$teacher,$exported; print('%.0f%%' % (100*(r-q)/(r-t)) if r > t else '—')")
  printf '| %s | %s | %s | %s | %s | %.2f | %s | %s |\n' "$scheme" "$teacher" "$rtn" "$gptq" "$sq" "$fake" "$exported" "$recovery"
done
