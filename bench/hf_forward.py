#!/usr/bin/env python3
"""Baseline for bench_forward: the same random Llama shape through transformers'
LlamaForCausalLM (bf16, SDPA attention, no grad), timed the same way. Prints one JSON
line with the same fields. Run on the GPU machine: python3 bench/hf_forward.py --help"""
import argparse, json, time
import torch
from transformers import LlamaConfig, LlamaForCausalLM

p = argparse.ArgumentParser()
for name, default in [("hidden", 2048), ("layers", 16), ("heads", 32), ("kv-heads", 8), ("intermediate", 8192),
                      ("vocab", 128256), ("batch", 8), ("seq", 2048), ("warmup", 3), ("iters", 10)]:
    p.add_argument("--" + name, type=int, default=default)
p.add_argument("--tied", type=int, default=1)
p.add_argument("--peak-tflops", type=float, default=989.4)
p.add_argument("--compile", action="store_true", help="torch.compile the model")
a = p.parse_args()

cfg = LlamaConfig(vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=a.intermediate,
                  num_hidden_layers=a.layers, num_attention_heads=a.heads, num_key_value_heads=a.kv_heads,
                  max_position_embeddings=a.seq, rms_norm_eps=1e-5, tie_word_embeddings=bool(a.tied),
                  rope_parameters=dict(rope_type="default", rope_theta=500000.0))
torch.manual_seed(1234)
model = LlamaForCausalLM(cfg).to("cuda", torch.bfloat16).eval()
model.config._attn_implementation = "sdpa"
fwd = torch.compile(model) if a.compile else model
ids = torch.randint(0, a.vocab, (a.batch, a.seq), device="cuda")
with torch.no_grad():
    for _ in range(a.warmup):
        fwd(ids, use_cache=False)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(a.iters):
        fwd(ids, use_cache=False)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t
h, q, kv = a.hidden, a.hidden, a.kv_heads * (a.hidden // a.heads)
matmul = a.layers * (h * q + 2 * h * kv + q * h + 3 * h * a.intermediate) + a.vocab * h
flops_per_token = 2 * matmul + 2 * a.layers * a.seq * q
tps = a.batch * a.seq * a.iters / seconds
tflops = tps * flops_per_token / 1e12
print(json.dumps({"bench": "forward", "impl": "transformers" + ("+compile" if a.compile else ""),
                  "parameters": sum(p.numel() for p in model.parameters()), "batch": a.batch, "seq": a.seq,
                  "tokens_per_second": tps, "tflops": tflops, "mfu": tflops / a.peak_tflops,
                  "seconds_per_forward": seconds / a.iters}))
