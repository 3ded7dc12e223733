#!/usr/bin/env python3
"""Where the GPU time of a profiled qtrain run goes (logging.profile_step; docs/performance.md).
Reads the Chrome trace that qtrain's profiler wrote (run.output_dir/profile/trace_steps_*.json)
and prints: the profiled span, the time at least one kernel ran (GPU busy) and the idle rest,
kernel time by category, and the kernels that took the most time. With --json, one JSON
object instead. Usage: bench/profile_summary.py TRACE.json [--top 25] [--json]"""
import argparse, collections, json, re, sys

CATEGORIES = [  # first match wins; matched against the kernel's demangled name
    ("nccl", r"nccl"),
    ("attention", r"flash|fmha|attention|sdpa"),
    ("gemm", r"gemm|cutlass|nvjet|xmma|cublas|sm90_|sm80_|splitKreduce"),
    ("fake_quant", r"qtrain::quant|fake_quant|minmax_qparams"),
    ("qtrain_fused", r"qtrain::"),
    ("optimizer", r"multi_tensor_apply|foreach|adam"),
    ("softmax_loss", r"softmax|log_softmax|nll|cross_entropy"),
    ("reduce", r"reduce|norm|sum|mean|max|min"),
    ("copy_cast", r"copy|Cast|cat|index|gather|scatter|embedding"),
    ("elementwise", r"elementwise|unrolled|pointwise|vectorized"),
]


def category(name):
    for label, pattern in CATEGORIES:
        if re.search(pattern, name, re.IGNORECASE):
            return label
    return "other"


def short(name, width=110):
    name = re.sub(r"^void ", "", name)
    return name if len(name) <= width else name[: width - 3] + "..."


def busy_time(intervals):
    total, end = 0.0, None
    start = None
    for s, e in sorted(intervals):
        if end is None or s > end:
            if end is not None:
                total += end - start
            start, end = s, e
        else:
            end = max(end, e)
    if end is not None:
        total += end - start
    return total


def main():
    p = argparse.ArgumentParser()
    p.add_argument("trace")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    events = json.load(open(a.trace)).get("traceEvents", [])
    kernels = [e for e in events if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
    if not kernels:
        sys.exit(f"{a.trace}: no GPU kernels in the trace (a CPU run?)")
    intervals = [(e["ts"], e["ts"] + e["dur"]) for e in kernels]
    span = max(e for _, e in intervals) - min(s for s, _ in intervals)
    busy = busy_time(intervals)
    by_category = collections.Counter()
    by_name = collections.defaultdict(lambda: [0.0, 0])
    for e in kernels:
        name = e["name"] if e["cat"] == "kernel" else e["cat"]
        by_category[category(name) if e["cat"] == "kernel" else "copy_cast"] += e["dur"]
        by_name[name][0] += e["dur"]
        by_name[name][1] += 1
    kernel_total = sum(by_category.values())
    top = sorted(by_name.items(), key=lambda kv: -kv[1][0])[: a.top]
    launches = sum(1 for e in kernels if e["cat"] == "kernel")
    if a.json:
        print(json.dumps({"trace": a.trace, "span_ms": span / 1e3, "gpu_busy_ms": busy / 1e3,
                          "gpu_idle_fraction": 1 - busy / span, "kernel_ms": kernel_total / 1e3, "launches": launches,
                          "categories_ms": {k: v / 1e3 for k, v in by_category.most_common()},
                          "top": [{"name": n, "ms": t / 1e3, "count": c} for n, (t, c) in top]}))
        return
    print(f"{a.trace}: span {span / 1e3:.1f} ms, GPU busy {busy / 1e3:.1f} ms ({100 * busy / span:.1f}%), "
          f"idle {100 * (1 - busy / span):.1f}%, {launches} kernel launches")
    print("| category | ms | share of kernel time |\n| --- | --- | --- |")
    for label, t in by_category.most_common():
        print(f"| {label} | {t / 1e3:.1f} | {100 * t / kernel_total:.1f}% |")
    print("| kernel | ms | calls | share |\n| --- | --- | --- | --- |")
    for name, (t, c) in top:
        print(f"| {short(name)} | {t / 1e3:.2f} | {c} | {100 * t / kernel_total:.1f}% |")


if __name__ == "__main__":
    main()
