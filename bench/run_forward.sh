#!/usr/bin/env bash
# Forward throughput of a ~1.2B Llama-3.2-1B-shape model in bf16 on one GPU: qtrain against
# transformers (eager module, SDPA) in the same command, with the ratio.
# Usage (GPU machine, after scripts/build.sh): bench/run_forward.sh [extra bench args]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp}/bench_forward.jsonl"
: > "$out"
build/bench/bench_forward "$@" | tee -a "$out"
python3 bench/hf_forward.py "$@" | tee -a "$out"
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
q = next(r for r in rows if r["impl"] == "qtrain")
for r in rows:
    if r is q: continue
    print(f"qtrain / {r['impl']}: tokens/s x{q['tokens_per_second'] / r['tokens_per_second']:.3f}, "
          f"MFU {q['mfu']:.3f} vs {r['mfu']:.3f}")
PY
