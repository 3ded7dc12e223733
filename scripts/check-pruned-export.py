#!/usr/bin/env python3
"""Checks that a pruned export of qtrain (run.output_dir/export, docs/pruning.md) loads in
transformers as a smaller model and computes the perplexity qtrain printed for it.

    python3 scripts/check-pruned-export.py EXPORT_DIR VALIDATION.h5 [--seq-len 64]
        [--max-windows 0] [--expect PPL] [--reference ORIGINAL_DIR]

Needs torch, transformers and h5py (the GPU machine; not the CPU build machine). Steps:
1. config.json: intermediate_size, num_attention_heads, num_key_value_heads, head_dim
   explicit; with --reference, the original's sizes for comparison.
2. AutoModelForCausalLM.from_pretrained (fp32, eager attention; a compressed-tensors
   export needs the compressed-tensors package and is decompressed by transformers): every
   layer's projections have the shapes the config implies.
3. Perplexity as qeval defines it (docs/formats.md): non-overlapping windows of seq-len
   tokens of input_ids, every token after the first of a window predicted, log-softmax in
   fp32, NLL summed in float64. With --expect, |ppl - expected| / expected must be below
   --tolerance (default 1e-4: fp32 on another device and library, summation order differs;
   use 5e-3 for a quantized export, whose integer GEMMs transformers does not run).
Exit status 0 when every check passes."""
import argparse
import json
import math
import os
import sys

import h5py
import numpy as np
import torch
from transformers import AutoModelForCausalLM


def main():
    p = argparse.ArgumentParser()
    p.add_argument("export_dir")
    p.add_argument("tokens")
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--max-windows", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--expect", type=float)
    p.add_argument("--tolerance", type=float, default=1e-4)
    p.add_argument("--reference", help="the unpruned model folder, to print its sizes")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args()

    config = json.load(open(os.path.join(a.export_dir, "config.json")))
    keys = ["hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim", "num_hidden_layers",
            "num_experts", "num_local_experts", "mlp_only_layers"]
    print("export:   ", {k: config.get(k) for k in keys})
    if a.reference:
        ref = json.load(open(os.path.join(a.reference, "config.json")))
        print("reference:", {k: ref.get(k) for k in keys})
    ok = "head_dim" in config
    if not ok:
        print("FAIL head_dim is not explicit in config.json")

    model = AutoModelForCausalLM.from_pretrained(a.export_dir, dtype=torch.float32, attn_implementation="eager")
    model.to(a.device).eval()
    heads, kv, d = config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]
    hidden, inter = config["hidden_size"], config["intermediate_size"]
    expected = {"q_proj": (heads * d, hidden), "k_proj": (kv * d, hidden), "v_proj": (kv * d, hidden),
                "o_proj": (hidden, heads * d), "gate_proj": (inter, hidden), "up_proj": (inter, hidden),
                "down_proj": (hidden, inter)}
    experts = config.get("num_experts", config.get("num_local_experts"))
    moe_inter = config.get("moe_intermediate_size", inter)
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "gate" and experts and hasattr(module, "weight"):  # a mixture's router
            if tuple(module.weight.shape) != (experts, hidden):
                print(f"FAIL {name}.weight has shape {tuple(module.weight.shape)}, the config implies {(experts, hidden)}")
                ok = False
            continue
        if leaf in expected and hasattr(module, "weight") and module.weight.dim() == 2:
            want = expected[leaf]
            if ".experts." in name:  # an expert's MLP (checkpoints written per expert)
                want = {"gate_proj": (moe_inter, hidden), "up_proj": (moe_inter, hidden),
                        "down_proj": (hidden, moe_inter)}[leaf]
            if tuple(module.weight.shape) != want:
                print(f"FAIL {name}.weight has shape {tuple(module.weight.shape)}, the config implies {want}")
                ok = False
    print("parameters:", sum(t.numel() for t in model.parameters()))

    with h5py.File(a.tokens, "r") as f:
        ids = np.asarray(f["input_ids"][:], dtype=np.int64)
    n = a.seq_len
    windows = len(ids) // n
    if a.max_windows > 0:
        windows = min(windows, a.max_windows)
    nll = 0.0
    with torch.no_grad():
        for start in range(0, windows, a.batch_size):
            count = min(a.batch_size, windows - start)
            batch = torch.from_numpy(ids[start * n:(start + count) * n].reshape(count, n)).to(a.device)
            logits = model(batch).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1)
            nll -= logp.gather(-1, batch[:, 1:, None]).double().sum().item()
    ppl = math.exp(nll / (windows * (n - 1)))
    print(f"perplexity {ppl:.6f} over {windows} windows of {n} tokens")
    if a.expect is not None:
        err = abs(ppl - a.expect) / a.expect
        good = err < a.tolerance
        print(f"{'ok  ' if good else 'FAIL'} qtrain printed {a.expect:.6f}: relative difference {err:.2e} (tolerance {a.tolerance:g})")
        ok = ok and good
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
