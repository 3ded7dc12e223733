#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ (the whole project compiled by clang with ASan + UBSan,
# -DQTRAIN_FUZZ=ON) into build-fuzz/ and runs each
# for SECONDS (default 60) from its committed seed corpus (fuzz/corpus/<target>, copied: the
# corpus the run grows stays in build-fuzz/). A crash, a sanitizer report, a leak, a timeout
# (10 s per input) or memory over 2 GB fails the script; the input that caused it is left in
# build-fuzz/findings/<target>/ and must be fixed and committed to fuzz/regressions/<target>/,
# which is replayed first on every run. Prints one line per target: executions, corpus size.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]   (environment: FUZZ_JOBS, default 2 at a time)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config model_config hf_tokenizer sentencepiece safetensors checkpoint_index compressed_config token_file)
build=build-fuzz
command -v clang++ > /dev/null || { echo "fuzz.sh: clang++ not found (apt-get install clang)" >&2; exit 2; }
CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O1 -gline-tables-only" -DQTRAIN_FUZZ=ON \
  > "$build.configure.log" 2>&1 || { cat "$build.configure.log" >&2; exit 1; }
rm -f "$build.configure.log"
fuzz_targets=()
for t in "${targets[@]}"; do fuzz_targets+=(--target "fuzz_$t"); done
cmake --build "$build" -j "$(nproc)" "${fuzz_targets[@]}" > "$build.build.log" 2>&1 \
  || { tail -40 "$build.build.log" >&2; exit 1; }
rm -f "$build.build.log"
# allocator_may_return_null: a failed malloc returns NULL as it does outside ASan (libhdf5 asks
# for terabytes on forged metadata and reports the failure as an error); a failed C++ new
# still throws std::bad_alloc, which no target catches, so our own huge allocations stay findings.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  LSAN_OPTIONS=suppressions=$PWD/fuzz/lsan.supp:print_suppressions=0
run_one() {
  local t=$1 work="$build/corpus/$1" findings="$build/findings/$1"
  rm -rf "$work" "$findings"
  mkdir -p "$work" "$findings"
  cp fuzz/corpus/"$t"/* "$work"/
  if [ -d "fuzz/regressions/$t" ]; then  # every committed finding must now pass
    "$build/fuzz/fuzz_$t" -runs=0 fuzz/regressions/"$t"/* > "$build/$t.regressions.log" 2>&1 \
      || { echo "fuzz $t: a committed regression input fails again:" >&2; tail -30 "$build/$t.regressions.log" >&2; return 1; }
  fi
  if ! "$build/fuzz/fuzz_$t" "$work" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
       -artifact_prefix="$findings/" -print_final_stats=1 > "$build/$t.log" 2>&1; then
    echo "fuzz $t: FINDING (inputs in $findings/):" >&2
    grep -m1 -E "ERROR|runtime error|deadly|timeout|out-of-memory|uncaught" "$build/$t.log" >&2 || tail -20 "$build/$t.log" >&2
    return 1
  fi
  local runs units
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$build/$t.log")
  units=$(ls "$work" | wc -l)
  echo "fuzz $t: $runs executions in ${seconds} s, no finding; corpus ${units} inputs"
}
jobs_at_once=${FUZZ_JOBS:-2}
status=0
pids=()
for t in "${targets[@]}"; do
  run_one "$t" &
  pids+=($!)
  if [ ${#pids[@]} -ge "$jobs_at_once" ]; then
    wait "${pids[0]}" || status=1
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p" || status=1; done
exit $status
