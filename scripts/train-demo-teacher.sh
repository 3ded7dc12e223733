#!/usr/bin/env bash
# The demo's teacher (stage 2 of scripts/demo.sh, and the teacher of scripts/prune-results.sh
# and scripts/quant-results.sh): a small Llama trained from scratch on the demo corpus
# (configs/demo_teacher.yaml, 2 MPI ranks on the CPU), whose last checkpoint becomes the
# Hugging Face folder .cache/demo/teacher (config.json + model.safetensors in bf16, as
# teachers are published, with GPT-2's tokenizer beside it so that qtrain and qeval check
# that token files were made with it). Skipped when the folder exists. Needs the token files
# (scripts/prepare-demo-data.sh) and a built qtrain.
# Usage: scripts/train-demo-teacher.sh [BUILD_DIR] [extra qtrain arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shift || true
demo=.cache/demo
if [ -f "$demo/teacher/model.safetensors" ]; then
  echo "demo: $demo/teacher exists; not trained again (delete it, and $demo/teacher-run, to retrain)"
  exit 0
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1  # containers run as root
# glibc returns every freed block over 32 MB to the kernel and page-faults it in again on the
# next step (the logits of 1,024 tokens over GPT-2's 50,257 ids are 206 MB): keeping freed
# memory in the heap makes the CPU steps 1.5x (teacher) to 2x (student) faster, with the same
# losses (docs/performance.md, "CPU runs").
export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=8589934592 MALLOC_TOP_PAD_=536870912
mpirun --oversubscribe -n 2 -x MALLOC_MMAP_MAX_ -x MALLOC_TRIM_THRESHOLD_ -x MALLOC_TOP_PAD_ \
  "$build/qtrain" --config configs/demo_teacher.yaml "$@"
run="$demo/teacher-run/checkpoints"
last="$run/$(cat "$run/latest")"
rm -rf "$demo/teacher.tmp"
"$build/qtrain" export --checkpoint "$last" --output "$demo/teacher.tmp" --tokenizer .cache/corpus/gpt2
mv "$demo/teacher.tmp" "$demo/teacher"  # last: its presence means the teacher is complete
echo "demo: teacher = $last -> $demo/teacher"
