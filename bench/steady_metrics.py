#!/usr/bin/env python3
"""Steady-state throughput of a qtrain run from its metrics.jsonl (docs/performance.md):
the mean tokens/s and MFU of the training rows after the first --skip ones (allocator
growth, cuBLAS autotuning) and without the last --drop-last ones (a profiled step), and the
peak memory of all rows. Prints one JSON object; --label adds fields, e.g. --label impl=qtrain.
Usage: bench/steady_metrics.py METRICS.jsonl [--skip 4] [--drop-last 0] [--gpus 1] [--label k=v]..."""
import argparse, json

p = argparse.ArgumentParser()
p.add_argument("metrics")
p.add_argument("--skip", type=int, default=4)
p.add_argument("--drop-last", type=int, default=0)
p.add_argument("--gpus", type=int, default=1)
p.add_argument("--label", action="append", default=[])
a = p.parse_args()
rows = [json.loads(line) for line in open(a.metrics)]
rows = [r for r in rows if r.get("kind", "train") == "train" and "loss" in r]
steady = rows[a.skip:len(rows) - a.drop_last] or rows
tps = sum(r["tokens_per_second"] for r in steady) / len(steady)
out = dict(kv.split("=", 1) for kv in a.label)
out.update({"gpus": a.gpus, "steps": len(rows), "tokens_per_second": round(tps),
            "tokens_per_second_per_gpu": round(tps / a.gpus),
            "mfu": round(sum(r.get("mfu", 0) for r in steady) / len(steady), 4),
            "peak_memory_gib": round(max(r["peak_memory_bytes"] for r in rows) / 2**30, 2),
            "final_loss": rows[-1]["loss"], "buckets_overlapped": rows[-1].get("buckets_overlapped")})
print(json.dumps(out))
