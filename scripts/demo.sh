#!/usr/bin/env bash
# The README's first command: installs what is missing, builds, and runs the demo on the CPU
# with 2 MPI ranks, in three stages, each skipped when its output exists:
#   1. data:    the demo corpus (English kernel documentation) in GPT-2 tokens, into
#               .cache/demo/{train,val}.h5 (scripts/prepare-demo-data.sh)
#   2. teacher: a small Llama trained from scratch on it (configs/demo_teacher.yaml), whose
#               last checkpoint becomes the Hugging Face folder .cache/demo/teacher
#   3. student: the main job on its embedded default config (configs/demo.yaml, qtrain
#               without --config): a smaller student distilled from that teacher
# A second run reuses the data and the teacher, and the student's run (checkpoint.resume:
# auto) finds itself finished and only evaluates. Extra arguments go to the last qtrain,
# e.g. `scripts/demo.sh --dry-run` prints its resolved config (and runs nothing else).
# BUILD_DIR (default build) is the build folder.
set -euo pipefail
cd "$(dirname "$0")/.."
build="${BUILD_DIR:-build}"
scripts/install-deps.sh
# Only the three programs (the tests and benchmarks are scripts/test.sh's).
BUILD_DIR="$build" BUILD_TARGETS="qtrain qeval qdata" scripts/build.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1  # containers run as root
# glibc returns every freed block over 32 MB to the kernel and page-faults it in again on the
# next step (the logits of 1,024 tokens over GPT-2's 50,257 ids are 206 MB): keeping freed
# memory in the heap makes the CPU steps 1.5x (teacher) to 2x (student) faster, with the same
# losses (docs/performance.md, "CPU runs").
export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=8589934592 MALLOC_TOP_PAD_=536870912
qtrain=(mpirun --oversubscribe -n 2 -x MALLOC_MMAP_MAX_ -x MALLOC_TRIM_THRESHOLD_ -x MALLOC_TOP_PAD_ "$build/qtrain")

# Options that print and exit go straight to qtrain: no data, no teacher.
for arg in "$@"; do
  case "$arg" in
    --dry-run|--help|-h|--version|--print-config-reference) exec "${qtrain[@]}" "$@" ;;
  esac
done

# Under mpirun the ranks' stderr is a pipe, so qtrain's `auto` would print progress lines;
# when this script runs on a terminal, ask for the redrawn bar.
progress=lines
[ -t 2 ] && progress=bar

demo=.cache/demo
# Each stage's wall time, printed as it ends and together at the end (SECONDS: bash's clock).
times=() last=0  # SECONDS counts from the start of the script
stage() {
  [ ${#times[@]} -gt 0 ] || times+=("install and build $((SECONDS - last)) s")
  printf '\n== demo: %s\n' "$*"
  last=$SECONDS
}
stage_done() { times+=("$1 $((SECONDS - last)) s"); echo "demo: $1 took $((SECONDS - last)) s"; }

stage "1/3 data: demo corpus -> $demo/train.h5, $demo/val.h5"
scripts/prepare-demo-data.sh "$build"

stage_done data
stage "2/3 teacher: train a small Llama from scratch (configs/demo_teacher.yaml) -> $demo/teacher"
scripts/train-demo-teacher.sh "$build" --set logging.progress="$progress"
# The same windows as the student's evaluation (configs/demo.yaml, eval section).
"$build/qeval" --model "$demo/teacher" --data "$demo/val.h5" --seq-len 256 --batch-size 16 --max-windows 64 \
  | sed 's/^/demo: teacher /'

stage_done teacher
stage "3/3 student: distil a smaller student from the teacher (configs/demo.yaml, embedded in qtrain)"
"${qtrain[@]}" --set logging.progress="$progress" "$@"
stage_done student
echo "demo: done in $((SECONDS / 60)) min $((SECONDS % 60)) s ($(IFS=,; echo "${times[*]}" | sed 's/,/, /g'))"
echo "demo: metrics in runs/demo/metrics.jsonl, TensorBoard: tensorboard --logdir runs/demo/tensorboard"
# The report last (docs/report.md): qtrain printed its results table above; headless Chromium
# renders the page, as a reader's browser would, into a screenshot beside it.
report="$(pwd)/runs/demo/report.html"
browser="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
if [ -n "$browser" ] && "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1100,2600 \
     --screenshot="$(pwd)/runs/demo/report.png" "file://$report" > /dev/null 2>&1; then
  echo "demo: report rendered by headless Chromium -> runs/demo/report.png"
fi
echo "demo: report $report (results table: runs/demo/report.md)"
