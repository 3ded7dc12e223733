#!/usr/bin/env bash
# Perplexity against structured sparsity, without and with distillation recovery: the table
# of docs/results.md (pruning section). Each row is one qtrain job on configs/prune_cpu.yaml:
#   no recovery: one-shot pruning at step 0, then 1 step at lr 1e-10 (qtrain needs a step;
#                AdamW's first update moves a weight by about lr, i.e. nothing), export;
#   recovery:    the same pruning, then training.steps of KL distillation from the teacher.
# Every row prints the masked student's perplexity and the exported (physically smaller)
# checkpoint's, which must agree. Usage:
#   scripts/prune-results.sh [BUILD_DIR]      (default build; needs qtrain and qeval built)
# Environment: TEACHER (default .cache/demo/teacher if it exists, else the test fixture),
# TRAIN / VAL token files, STEPS (recovery steps, default 200), MULTIPLE (default 16),
# OUT (default runs/prune-results), RANKS (default 1; > 1 runs under mpirun), ROWS (below).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
if [[ -z "${TEACHER:-}" ]]; then
  if [[ -f .cache/demo/teacher/config.json ]]; then
    TEACHER=.cache/demo/teacher TRAIN=${TRAIN:-.cache/demo/train.h5} VAL=${VAL:-.cache/demo/val.h5}
  else
    TEACHER=tests/fixtures/llama_gqa_llama3
  fi
fi
TRAIN=${TRAIN:-tests/fixtures/tokens.h5}
VAL=${VAL:-$TRAIN}
STEPS=${STEPS:-200}
MULTIPLE=${MULTIPLE:-16}
OUT=${OUT:-runs/prune-results}
RANKS=${RANKS:-1}
launcher=()
if (( RANKS > 1 )); then launcher=(mpirun --oversubscribe -n "$RANKS"); fi
rm -rf "$OUT"
mkdir -p "$OUT"

common=(--config configs/prune_cpu.yaml --set "model.teacher=$TEACHER" --set "data.train=$TRAIN"
        --set "data.validation=$VAL" --set "prune.multiple=$MULTIPLE")
teacher_ppl=$("$build/qeval" --model "$TEACHER" --data "$VAL" --seq-len 64 --json | sed -n 's/.*"perplexity":\([0-9.e+-]*\).*/\1/p')
echo "teacher $TEACHER: perplexity $teacher_ppl on $VAL"
printf '| %-28s | %-18s | %-10s | %-22s | %-22s | %-22s |\n' "pruned" "kept (L, H, I, kv)" "parameters" \
  "no recovery: masked" "no recovery: exported" "distilled $STEPS steps: masked / exported"
# Rows: "name mlp_sparsity heads_sparsity importance [layer_sparsity [hidden_sparsity
# [layer_importance]]]", ';'-separated in ROWS. KV-group rows need a teacher with at least 2
# KV heads (the demo teacher has 1; the fixture has 2).
IFS=';' read -r -a rows <<<"${ROWS:-mlp25 0.25 0 activation;mlp50 0.5 0 activation;mlp50-magnitude 0.5 0 magnitude}"
for row in "${rows[@]}"; do
  read -r name mlp heads importance layers hidden layer_importance <<<"$row"
  args=("${common[@]}" --set "prune.mlp_sparsity=$mlp" --set "prune.heads_sparsity=$heads"
        --set "prune.importance=$importance" --set "prune.layer_sparsity=${layers:-0}"
        --set "prune.hidden_sparsity=${hidden:-0}" --set "prune.layer_importance=${layer_importance:-cosine}")
  "${launcher[@]}" "$build/qtrain" "${args[@]}" --set training.steps=1 --set training.warmup_steps=0 \
    --set training.lr=1e-10 --set "run.output_dir=$OUT/$name-oneshot" > "$OUT/$name-oneshot.out" 2> "$OUT/$name-oneshot.err"
  "${launcher[@]}" "$build/qtrain" "${args[@]}" --set "training.steps=$STEPS" \
    --set "run.output_dir=$OUT/$name-distilled" > "$OUT/$name-distilled.out" 2> "$OUT/$name-distilled.err"
  pair() { sed -n 's/.*masked student \([0-9.]*\), exported pruned checkpoint \([0-9.]*\).*/\1 \2/p' "$1"; }
  read -r a b <<<"$(pair "$OUT/$name-oneshot.out")"
  read -r c d <<<"$(pair "$OUT/$name-distilled.out")"
  sizes=$(sed -n 's/.*(\([0-9]*\) parameters; \([0-9]*\) layers, hidden_size \([0-9]*\), intermediate_size \([0-9]*\), [0-9]* attention heads, \([0-9]*\) kv heads.*/\1 \2 \3 \4 \5/p' \
          "$OUT/$name-distilled.out")
  read -r params nlayers width inter kv <<<"$sizes"
  how=$importance
  if [[ "${layers:-0}" != 0 ]]; then how="$how, layers by ${layer_importance:-cosine}"; fi
  printf '| %-28s | %-18s | %-10s | %-22s | %-22s | %-22s |\n' "$name ($how)" "$nlayers, $width, $inter, $kv" "$params" "$a" "$b" "$c / $d"
done
