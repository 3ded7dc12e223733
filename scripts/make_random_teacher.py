#!/usr/bin/env python3
"""Makes a random-weight Hugging Face Llama checkpoint and a token file of random ids, for
GPU throughput runs where no pretrained weights can be downloaded (the GPU machine has
transformers but no network). Usage:
    python3 scripts/make_random_teacher.py OUT_DIR [--shape 1b|300m] [--tokens N]
Writes OUT_DIR/teacher (config.json + model.safetensors, bf16) and OUT_DIR/tokens.h5
(input_ids int32, vocab_size attribute), deterministic (seed 0)."""
import argparse, os
import h5py, numpy as np, torch
from transformers import LlamaConfig, LlamaForCausalLM

SHAPES = {  # Llama-3.2-1B's shape, and a ~300M one
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True),
    "300m": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=16, num_attention_heads=16,
                 num_key_value_heads=4, vocab_size=32000, tie_word_embeddings=False),
}
p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--shape", default="1b", choices=SHAPES)
p.add_argument("--tokens", type=int, default=4_000_000)
a = p.parse_args()
torch.manual_seed(0)
cfg = LlamaConfig(max_position_embeddings=8192, rms_norm_eps=1e-5,
                  rope_parameters=dict(rope_type="default", rope_theta=500000.0), **SHAPES[a.shape])
with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
model.save_pretrained(os.path.join(a.out, "teacher"))
ids = np.random.default_rng(0).integers(0, cfg.vocab_size, size=a.tokens, dtype=np.int32)
with h5py.File(os.path.join(a.out, "tokens.h5"), "w") as f:
    d = f.create_dataset("input_ids", data=ids)
    d.attrs["vocab_size"] = np.int64(cfg.vocab_size)
print("teacher", sum(p.numel() for p in model.parameters()), "parameters;", a.tokens, "tokens")
