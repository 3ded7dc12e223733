#!/usr/bin/env bash
# The quantization results table of docs/results.md on the demo teacher (scripts/demo.sh
# must have made .cache/demo/teacher and the token files): for each scheme, the FP teacher,
# round-to-nearest and GPTQ PTQ (qtrain quantize), SmoothQuant for W8A8, and QAT + KD
# (configs/quant_results.yaml), every model evaluated by qeval on the same 64 windows of 256
# tokens of .cache/demo/val.h5; the exported checkpoints are evaluated as integer weights.
# Usage: scripts/quant-results.sh [BUILD_DIR]   (prints a markdown table; logs in runs/quant-results/)
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
demo=.cache/demo out=runs/quant-results
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$out"
ppl() {  # perplexity of a folder on the report's windows
  "$build/qeval" --model "$1" --data "$demo/val.h5" --seq-len 256 --batch-size 16 --max-windows 64 --json |
    python3 -c 'import json,sys; print("%.2f" % json.load(sys.stdin)["perplexity"])'
}
teacher=$(ppl "$demo/teacher")
printf '| scheme | teacher (FP32) | RTN | GPTQ | SmoothQuant | QAT + KD (fake quant) | QAT + KD (exported) | recovery vs RTN |\n'
printf '| --- | --- | --- | --- | --- | --- | --- | --- |\n'
for scheme in w4a16-g32 w8a8; do
  rules=(--rule lm_head=none --rule "re:model\.layers\..*=$scheme")
  for method in rtn gptq $([ "$scheme" = w8a8 ] && echo smoothquant); do
    "$build/qtrain" quantize --model "$demo/teacher" --calib "$demo/train.h5" "${rules[@]}" --method "$method" \
      --seq-len 256 --calibration-sequences 16 --output "$out/$scheme-$method" > "$out/$scheme-$method.log" 2>&1
  done
  rtn=$(ppl "$out/$scheme-rtn"); gptq=$(ppl "$out/$scheme-gptq")
  sq=$([ "$scheme" = w8a8 ] && ppl "$out/$scheme-smoothquant" || echo "—")
  rm -rf "$out/qat-$scheme"
  mpirun --oversubscribe -n 2 "$build/qtrain" --config configs/quant_results.yaml \
    --set run.output_dir="$out/qat-$scheme" --set "quant.rules=[lm_head=none, 're:model\\.layers\\..*=$scheme']" \
    > "$out/qat-$scheme.log" 2>&1
  fake=$(sed -n 's/.*fake-quant student \([0-9.]*\), exported integer checkpoint \([0-9.]*\).*/\1/p' "$out/qat-$scheme.log")
  exported=$(ppl "$out/qat-$scheme/export")
  recovery=$(python3 -c "r,t,q=$rtn,$teacher,$exported; print('%.0f%%' % (100*(r-q)/(r-t)) if r > t else '—')")
  printf '| %s | %s | %s | %s | %s | %.2f | %s | %s |\n' "$scheme" "$teacher" "$rtn" "$gptq" "$sq" "$fake" "$exported" "$recovery"
done
