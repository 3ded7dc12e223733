#!/usr/bin/env bash
# docs/results.md's GPU compression table on a teacher that quantization hurts, in one command
# on the GPU machine (issue 20). Stages, each skipped where its output exists (so a command
# cut off by the device tool's time limit resumes where it stopped on a warm machine):
#   data     unpack .cache/code/{code.tar.xz,prose.tar} (scripts/fetch-code-corpus.sh, carried),
#            cut GPT-2's BPE to 8,192 ids (scripts/truncate-bpe-tokenizer.py) and tokenize with
#            qdata on every core: .cache/code/train.h5 and val.h5 (1% of the files, by hash),
#            and prose.h5 (kernel documentation: the other domain, never trained on)
#   teacher  configs/gpu_code_teacher.yaml from scratch (~5.2M parameters, 537M tokens), then
#            its bf16 Hugging Face folder runs/gpu-table/teacher
#   quant    per scheme: RTN, GPTQ (and AWQ for weight-only int, SmoothQuant for W8A8) by
#            `qtrain quantize`, and QAT + KD from GPTQ (configs/gpu_code_qat.yaml)
#   sweep    QAT recipes (steps, lr, learned scales) run side by side on the one GPU (SWEEP)
#   prune    MLP 25% and 50%, KV groups 50%, 25% of the layers: no recovery (one step at lr
#            1e-10), KD, and KD with W4A16 g128 QAT (from RTN)
# Every model is evaluated by qeval on 256 windows of 512 tokens of val.h5 and of prose.h5;
# the QAT+KD fake-quant and masked students by qtrain itself on the same val.h5 windows.
# Tables (Markdown) go to stdout and $OUT/gpu_table.md, logs to runs/gpu-table/ and $OUT.
# Usage (GPU machine): source .devdeps/setup.sh && scripts/gpu-table.sh [STAGE...]
#   (carry [".devdeps", ".cache/code/code.tar.xz", ".cache/code/prose.tar"])
# TEACHER_TAR: a teacher.tar that an earlier command's teacher stage left in $OUT (carried),
# unpacked instead of training again, so that commands split over machines share a teacher.
# Environment, for a smoke test elsewhere: DEVICE (default cuda), WINDOWS (default 512),
# TEACHER_SET / JOB_SET (extra --set arguments of the teacher's / every QAT and pruning job's
# qtrain, e.g. JOB_SET="--set training.steps=2").
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-setup.sh
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(data teacher quant prune)
code=.cache/code out=runs/gpu-table teacher=runs/gpu-table/teacher
mkdir -p "$out"
windows=${WINDOWS:-256} device=${DEVICE:-cuda}
read -r -a teacher_set <<<"${TEACHER_SET:-}"
read -r -a job_set <<<"${JOB_SET:-}"
log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
want() { local s; for s in "${stages[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }

if want data && [ ! -f "$code/prose.h5" ]; then
  log "data: unpack and tokenize"
  rm -rf "$code/text" && mkdir -p "$code/text"
  tar -xJf "$code/code.tar.xz" -C "$code/text" && tar -xf "$code/prose.tar" -C "$code/text" || exit 1
  python3 scripts/truncate-bpe-tokenizer.py tests/fixtures/tokenizer/gpt2/tokenizer.json 8192 "$code/tokenizer" || exit 1
  build/qdata --tokenizer "$code/tokenizer/tokenizer.json" --input "$code/text/code" --output "$code/train.h5" \
    --val-output "$code/val.h5" --val-fraction 0.01 --append-eos --json > "$OUT/qdata_code.json" || exit 1
  build/qdata --tokenizer "$code/tokenizer/tokenizer.json" --input "$code/text/prose" --output "$code/prose.tar.h5" \
    --append-eos --json > "$OUT/qdata_prose.json" && mv "$code/prose.tar.h5" "$code/prose.h5" || exit 1
  python3 -c 'import json,sys
for f in sys.argv[1:]:
    j = json.load(open(f)); print(f, j["documents"], "documents", j["tokens"], "tokens", "%.1f s" % j["seconds"],
        {k: j[k]["tokens"] for k in ("train", "val") if k in j})' "$OUT/qdata_code.json" "$OUT/qdata_prose.json" >&2
fi

# A teacher carried from an earlier run (TEACHER_TAR, made by the teacher stage as
# $OUT/teacher.tar): the rows of later commands then measure the same teacher.
if [ -n "${TEACHER_TAR:-}" ] && [ ! -f "$teacher/model.safetensors" ]; then
  log "teacher: unpacked from $TEACHER_TAR"
  tar -xf "$TEACHER_TAR" -C "$out" || exit 1
fi
if want teacher && [ ! -f "$teacher/model.safetensors" ]; then
  log "teacher: configs/gpu_code_teacher.yaml (resumes from its last checkpoint)"
  build/qtrain --config configs/gpu_code_teacher.yaml --set run.output_dir="$out/teacher-run" \
    --set model.device="$device" "${teacher_set[@]}" > "$out/teacher.log" 2>&1 \
    || { tail -30 "$out/teacher.log" >&2; exit 1; }
  grep -E "^train .*steps|perplexity|tok/s" "$out/teacher.log" | tail -5 >&2
  cp "$out/teacher-run/metrics.jsonl" "$OUT/metrics_code_teacher.jsonl"
  run="$out/teacher-run/checkpoints"
  build/qtrain export --checkpoint "$run/$(cat "$run/latest")" --output "$teacher.tmp" --tokenizer "$code/tokenizer" \
    > /dev/null && mv "$teacher.tmp" "$teacher" || exit 1
  tar -cf "$OUT/teacher.tar" -C "$out" teacher
fi

# "val prose" perplexities of a folder (qeval, the model loaded once), or "failed failed".
ppl() {
  build/qeval --model "$1" --data "$code/val.h5" "$code/prose.h5" --seq-len 512 --batch-size 64 \
    --max-windows "$windows" --device "$device" --json 2> "$1.qeval.err" \
    | python3 -c 'import json,sys; print(" ".join("%.3f" % d["perplexity"] for d in json.load(sys.stdin)["datasets"]))' \
    2> /dev/null || echo "failed failed"
}
# The student's and the export's validation perplexity from a qtrain run's log.
run_pair() { sed -n 's/^qtrain: perplexity on .*: .* student \([0-9.]*\), exported .* checkpoint \([0-9.]*\) .*/\1 \2/p' "$1"; }
recovery() { python3 -c 'import sys
t, r, q = map(float, sys.argv[1:])
print("%.0f%%" % (100 * (r - q) / (r - t)) if r > t else "—")' "$1" "$2" "$3" 2> /dev/null || echo "—"; }
qtrain_job() {  # NAME ARGS...: a QAT/pruning job of configs/gpu_code_qat.yaml into $out/NAME
  local name=$1; shift
  [ -f "$out/$name/export/config.json" ] && grep -q "^qtrain: perplexity" "$out/$name.log" 2> /dev/null && return 0
  rm -rf "$out/$name"
  build/qtrain --config configs/gpu_code_qat.yaml --set run.output_dir="$out/$name" --set model.device="$device" \
    "$@" "${job_set[@]}" > "$out/$name.log" 2>&1 \
    || { log "$name failed:"; tail -5 "$out/$name.log" >&2; }
}

read -r teacher_val teacher_prose <<<"$(ppl "$teacher")"
{
  echo "teacher $teacher: perplexity $teacher_val (val), $teacher_prose (prose)"
} | tee "$OUT/gpu_table.md"

if want sweep; then
  # QAT recipe search on this teacher: "name|scheme|PTQ method|--set ..." per entry of SWEEP
  # (';'-separated), SWEEP_JOBS (default 8) qtrain jobs at a time on the one GPU (a 5M model
  # leaves it mostly idle). Each prints its fake-quant and exported perplexity and recovery
  # against the RTN row of the same scheme (PTQ'd here too).
  sweep=${SWEEP:-"w4-300|w4a16-g128|gptq|;w4-300-lr1e3|w4a16-g128|gptq|--set training.lr=1e-3;w4-1000-lr1e3|w4a16-g128|gptq|--set training.steps=1000 --set training.lr=1e-3;w4-1000-lsq|w4a16-g128|gptq|--set training.steps=1000 --set quant.learnable_scales=true;w4-1000-lr1e3-lsq|w4a16-g128|gptq|--set training.steps=1000 --set training.lr=1e-3 --set quant.learnable_scales=true;w8a8-sq-1000-lr1e3|w8a8|smoothquant|--set training.steps=1000 --set training.lr=1e-3;nvfp4a16-1000-lr1e3-lsq|nvfp4a16|gptq|--set training.steps=1000 --set training.lr=1e-3 --set quant.learnable_scales=true;w3-1000-lr1e3-lsq|w3a16-g128|gptq|--set training.steps=1000 --set training.lr=1e-3 --set quant.learnable_scales=true"}
  IFS=';' read -r -a variants <<<"$sweep"
  started=$(date +%s) running=0
  for v in "${variants[@]}"; do
    IFS='|' read -r name scheme method sets <<<"$v"
    read -r -a extra <<<"$sets"
    (t0=$(date +%s)
     qtrain_job "sweep-$name" --set "quant.rules=[lm_head=none, 're:model\\.layers\\..*=$scheme']" \
       --set "quant.method=$method" "${extra[@]}"
     echo $(( $(date +%s) - t0 )) > "$out/sweep-$name.seconds"
     log "sweep $name: $(cat "$out/sweep-$name.seconds") s, fake-quant and exported val $(run_pair "$out/sweep-$name.log")") &
    running=$((running + 1))
    if [ $running -ge "${SWEEP_JOBS:-8}" ]; then wait -n; running=$((running - 1)); fi
  done
  wait
  log "sweep: ${#variants[@]} jobs in $(( $(date +%s) - started )) s"
  {
    echo
    echo "### QAT sweep (val, $windows windows): teacher $teacher_val"
    echo
    echo "| variant | scheme | RTN | fake quant | exported | exported prose | recovery | seconds |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
    for v in "${variants[@]}"; do
      IFS='|' read -r name scheme method sets <<<"$v"
      dir="$out/ptq-$scheme-kvnone-rtn"
      [ -f "$dir/config.json" ] || build/qtrain quantize --model "$teacher" --calib "$code/train.h5" --rule lm_head=none \
        --rule "re:model\.layers\..*=$scheme" --method rtn --seq-len 512 --calibration-sequences 128 \
        --device "$device" --output "$dir" > "$dir.log" 2>&1
      read -r rtn _ <<<"$(ppl "$dir")"
      read -r fake _ <<<"$(run_pair "$out/sweep-$name.log")"
      read -r ev ep <<<"$(ppl "$out/sweep-$name/export")"
      secs=$(cat "$out/sweep-$name.seconds" 2> /dev/null || echo "?")
      echo "| $name ($sets) | $scheme | $rtn | ${fake:-failed} | $ev | $ep | $(recovery "$teacher_val" "$rtn" "$ev") | $secs |"
    done
  } | tee -a "$OUT/gpu_table.md"
fi

if want quant; then
  # scheme label | qtrain scheme | PTQ methods | kv cache
  rows=("W4A16 g128|w4a16-g128|rtn gptq awq|none" "W4 per channel|w4a16|rtn gptq awq|none"
        "W3 g128|w3a16-g128|rtn gptq awq|none" "W2 g64|w2a16-g64|rtn gptq awq|none"
        "W4A8 g128 (int8 tokens)|w4a8-g128|rtn gptq|none" "W8A8 static|w8a8|rtn gptq smoothquant|none"
        "FP8|fp8|rtn gptq|none" "NVFP4A16|nvfp4a16|rtn gptq|none" "NVFP4 (W4A4)|nvfp4|rtn gptq|none"
        "MXFP4 (W4A4)|mxfp4|rtn gptq|none" "W4A16 g128 + FP8 KV|w4a16-g128|rtn gptq|fp8")
  table=()
  for row in "${rows[@]}"; do
    IFS='|' read -r label scheme methods kv <<<"$row"
    tag=${scheme}-kv${kv}
    declare -A val=() prose=()
    for method in $methods; do
      dir="$out/ptq-$tag-$method"
      if [ ! -f "$dir/config.json" ]; then
        build/qtrain quantize --model "$teacher" --calib "$code/train.h5" --rule lm_head=none \
          --rule "re:model\.layers\..*=$scheme" --method "$method" --kv-cache "$kv" --seq-len 512 \
          --calibration-sequences 128 --device "$device" --output "$dir" > "$dir.log" 2>&1 \
          || { log "$label $method failed:"; tail -3 "$dir.log" >&2; }
      fi
      read -r "val[$method]" "prose[$method]" <<<"$(ppl "$dir")"
    done
    log "$label: QAT + KD"
    qtrain_job "qat-$tag" --set "quant.rules=[lm_head=none, 're:model\\.layers\\..*=$scheme']" --set "quant.kv_cache=$kv"
    read -r fake exported_run <<<"$(run_pair "$out/qat-$tag.log")"
    read -r exp_val exp_prose <<<"$(ppl "$out/qat-$tag/export")"
    for domain in val prose; do
      declare -n d=$domain
      t=$([ $domain = val ] && echo "$teacher_val" || echo "$teacher_prose")
      awq=${d[awq]:-—}; sq=${d[smoothquant]:-—}
      [ "$scheme" = w8a8 ] && awq=$sq
      e=$([ $domain = val ] && echo "$exp_val" || echo "$exp_prose")
      f=$([ $domain = val ] && echo "${fake:-failed}" || echo "—")
      table+=("$domain|$label|$t|${d[rtn]}|${d[gptq]}|$awq|$f|$e|$(recovery "$t" "${d[rtn]}" "$e")")
      unset -n d
    done
    unset val prose
  done
  for domain in val prose; do
    {
      echo
      echo "### Quantization, $domain ($windows windows of 512 tokens)"
      echo
      echo "| scheme | teacher | RTN | GPTQ | AWQ (SmoothQuant for W8A8) | QAT + KD fake quant | QAT + KD exported | recovery vs RTN |"
      echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
      for r in "${table[@]}"; do
        IFS='|' read -r dom rest <<<"$r"
        [ "$dom" = "$domain" ] && echo "| ${rest//|/ | } |"
      done
    } | tee -a "$OUT/gpu_table.md"
  done
fi

if want prune; then
  # label | prune settings
  rows=("MLP 25%|prune.mlp_sparsity=0.25" "MLP 50%|prune.mlp_sparsity=0.5" "KV groups 50%|prune.heads_sparsity=0.5"
        "layers 25% (depth)|prune.layer_sparsity=0.25")
  ptable=()
  for row in "${rows[@]}"; do
    IFS='|' read -r label setting <<<"$row"
    tag=$(echo "$setting" | tr -c 'a-z0-9\n' '-')
    log "$label"
    qtrain_job "prune-$tag-oneshot" --set "$setting" --set training.steps=1 --set training.warmup_steps=0 --set training.lr=1e-10
    qtrain_job "prune-$tag-kd" --set "$setting"
    # RTN initialisation: GPTQ's fixed group scales cannot follow the columns that pruning removes
    qtrain_job "prune-$tag-kd-w4" --set "$setting" --set "quant.rules=[lm_head=none, 're:model\\.layers\\..*=w4a16-g128']" \
      --set quant.method=rtn --set prune.multiple=128  # whole groups of 128 columns
    line="$label"
    for run in oneshot kd kd-w4; do
      read -r masked _ <<<"$(run_pair "$out/prune-$tag-$run.log")"
      read -r v p <<<"$(ppl "$out/prune-$tag-$run/export")"
      line="$line|${masked:-failed}|$v|$p"
    done
    ptable+=("$line")
  done
  {
    echo
    echo "### Pruning ($windows windows of 512 tokens; masked = the student before physical removal, on val)"
    echo
    echo "| pruned | no recovery: masked | exported val | exported prose | KD: masked | exported val | exported prose | KD + W4A16 g128: fake quant | exported val | exported prose |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    for r in "${ptable[@]}"; do echo "| ${r//|/ | } |"; done
  } | tee -a "$OUT/gpu_table.md"
fi
tar czf "$OUT/gpu_table_logs.tgz" "$out"/*.log "$out"/*/metrics.jsonl 2> /dev/null
log "done"
