#!/usr/bin/env python3
"""The PyTorch reference of qtrain's distillation job (issue 7; docs/performance.md): what a
demanding PyTorch user would write for configs/gpu_distill_1b.yaml — DDP (NCCL, one process
per GPU, gradient accumulation with no_sync), a frozen bf16 teacher, an fp32 student under
bf16 autocast, fake quantization through PyTorch's own fused ops
(fake_quantize_per_channel_affine for int4 g128 / int8 per-channel weights,
fake_quantize_per_tensor_affine for static int8 activations, STE with clipping), KL(teacher ||
student) over the full vocabulary in fp32, fused AdamW, grad-norm clipping, cosine schedule
with warmup — eagerly or under torch.compile. Prints one JSON line with tokens/s, MFU (the
same FLOP count as qtrain: 3 x student forward + teacher forward, model/flops.h) and peak
memory. Launch: torchrun --nproc-per-node N bench/torch_distill_reference.py --help, or
mpirun -n N (Open MPI's rank variables are read)."""
import argparse, json, math, os, time

import h5py
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from transformers import LlamaForCausalLM

p = argparse.ArgumentParser()
p.add_argument("--teacher", default="runs/random-1b/teacher")
p.add_argument("--tokens", default="runs/random-1b/tokens.h5")
p.add_argument("--seq", type=int, default=2048)
p.add_argument("--micro-batch", type=int, default=2)
p.add_argument("--global-batch", type=int, default=16)
p.add_argument("--steps", type=int, default=12)
p.add_argument("--skip", type=int, default=4, help="steps left out of the means (allocator, autotuning, compile)")
p.add_argument("--scheme", default="none", choices=["none", "w4a16-g128", "w8a8"])
p.add_argument("--calibration-sequences", type=int, default=8)
p.add_argument("--compile", action="store_true")
p.add_argument("--lr", type=float, default=1e-4)
p.add_argument("--warmup", type=int, default=5)
p.add_argument("--peak-tflops", type=float, default=989.4)
p.add_argument("--profile-step", type=int, default=0, help="profile this step (1-based) with torch.profiler; 0 = off")
p.add_argument("--profile-out", default="runs/profile-torch/trace.json", help="Chrome trace of the profiled step")
a = p.parse_args()

# ---- one process per GPU ----
rank = int(os.environ.get("RANK", os.environ.get("OMPI_COMM_WORLD_RANK", 0)))
world = int(os.environ.get("WORLD_SIZE", os.environ.get("OMPI_COMM_WORLD_SIZE", 1)))
local = int(os.environ.get("LOCAL_RANK", os.environ.get("OMPI_COMM_WORLD_LOCAL_RANK", 0)))
torch.cuda.set_device(local)
if world > 1:
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    dist.init_process_group("nccl", rank=rank, world_size=world)
accumulation = a.global_batch // (a.micro_batch * world)
assert accumulation * a.micro_batch * world == a.global_batch, "global batch must split evenly"

# ---- models ----
torch.manual_seed(1234)
teacher = LlamaForCausalLM.from_pretrained(a.teacher, torch_dtype=torch.bfloat16, attn_implementation="sdpa").cuda().eval()
teacher.requires_grad_(False)
student = LlamaForCausalLM.from_pretrained(a.teacher, torch_dtype=torch.float32, attn_implementation="sdpa").cuda()
student.train()
cfg = student.config


# ---- fake quantization (compressed-tensors conventions, as qtrain: docs/quantization.md) ----
def weight_fake_quant(w, bits, group):
    rows = w.reshape(-1, group) if group else w
    qmin, qmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    absmax = rows.detach().abs().amax(dim=1)
    scale = (absmax / ((qmax - qmin) / 2)).clamp_min(torch.finfo(torch.bfloat16).eps)
    scale = scale.to(torch.bfloat16).float()
    zero = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(rows, scale, zero, 0, qmin, qmax).reshape(w.shape)


class FakeQuantLinear(torch.nn.Module):
    def __init__(self, linear, bits, group, act_bits):
        super().__init__()
        self.linear, self.bits, self.group, self.act_bits = linear, bits, group, act_bits
        self.register_buffer("input_scale", torch.ones((), device=linear.weight.device))
        self.observing, self.absmax = False, 0.0

    def forward(self, x):
        if self.act_bits:
            if self.observing:
                self.absmax = max(self.absmax, x.detach().abs().max().item())
            else:
                x = torch.fake_quantize_per_tensor_affine(x.float(), self.input_scale.float(), torch.zeros((), dtype=torch.int32, device=x.device), -128, 127).to(x.dtype)
        w = weight_fake_quant(self.linear.weight, self.bits, self.group)
        return F.linear(x, w, self.linear.bias)


quantizers = []
if a.scheme != "none":
    bits, group, act = (4, 128, 0) if a.scheme == "w4a16-g128" else (8, 0, 8)
    for layer in student.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name, child in list(parent.named_children()):
                if isinstance(child, torch.nn.Linear):
                    fq = FakeQuantLinear(child, bits, group, act)
                    setattr(parent, name, fq)
                    quantizers.append(fq)

# ---- data: consecutive windows of the token file, each rank its own micro-batches ----
ids = np.asarray(h5py.File(a.tokens, "r")["input_ids"][:], dtype=np.int64)
windows = len(ids) // (a.seq + 1)
def micro_batch(index):
    rows = [(index * a.micro_batch + r) % windows for r in range(a.micro_batch)]
    b = torch.from_numpy(np.stack([ids[r * (a.seq + 1):(r + 1) * (a.seq + 1)] for r in rows])).cuda()
    return b[:, :-1], b[:, 1:]

if quantizers and quantizers[0].act_bits:  # static activation scales: min-max over calibration sequences
    for q in quantizers:
        q.observing = True
    with torch.no_grad(), torch.autocast("cuda", torch.bfloat16):
        for i in range(math.ceil(a.calibration_sequences / a.micro_batch)):
            student(micro_batch(i)[0], use_cache=False)
    for q in quantizers:
        absmax = torch.tensor(q.absmax, device="cuda")
        if world > 1:
            dist.all_reduce(absmax, op=dist.ReduceOp.MAX)
        q.input_scale.fill_((absmax / 127.5).to(torch.bfloat16).float().item())
        q.observing = False

model = torch.nn.parallel.DistributedDataParallel(student, device_ids=[local], bucket_cap_mb=25) if world > 1 else student
forward = torch.compile(model) if a.compile else model
teacher_forward = torch.compile(teacher) if a.compile else teacher
decay = [p for n, p in student.named_parameters() if p.dim() >= 2]
no_decay = [p for n, p in student.named_parameters() if p.dim() < 2]
optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                              lr=a.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)
def lr_at(step):  # qtrain's: linear warmup, cosine to 0.1 x lr
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    t = (step - a.warmup) / max(1, a.steps - a.warmup)
    return a.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))

def kd_loss(student_logits, teacher_logits):
    s = F.log_softmax(student_logits.float(), dim=-1)
    t = F.log_softmax(teacher_logits.float(), dim=-1)
    return F.kl_div(s, t, log_target=True, reduction="sum") / s.shape[0]

# ---- training ----
def flops_per_token(c):
    h, q, kv = c.hidden_size, c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim
    matmul = c.num_hidden_layers * (h * q + 2 * h * kv + q * h + 3 * h * c.intermediate_size) + c.vocab_size * h
    return 2 * matmul + 2 * c.num_hidden_layers * a.seq * q
if not hasattr(cfg, "head_dim") or cfg.head_dim is None:
    cfg.head_dim = cfg.hidden_size // cfg.num_attention_heads
flops = 4 * flops_per_token(cfg)  # student forward + backward (3x) + the same-shape teacher forward
rows, index = [], rank * accumulation
torch.cuda.reset_peak_memory_stats()
profiler = None
for step in range(a.steps):
    torch.cuda.synchronize()
    if rank == 0 and step + 1 == a.profile_step:
        profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA])
        profiler.__enter__()
    start = time.perf_counter()
    for g in optimizer.param_groups:
        g["lr"] = lr_at(step)
    total = 0.0
    for m in range(accumulation):
        inputs, _ = micro_batch(index)
        index += 1
        with torch.no_grad(), torch.autocast("cuda", torch.bfloat16):
            t_logits = teacher_forward(inputs, use_cache=False).logits
        sync = world == 1 or m == accumulation - 1
        ctx = torch.enable_grad() if sync else model.no_sync()
        with ctx, torch.autocast("cuda", torch.bfloat16):
            s_logits = forward(inputs, use_cache=False).logits
            loss = kd_loss(s_logits.reshape(-1, s_logits.shape[-1]), t_logits.reshape(-1, t_logits.shape[-1])) / accumulation
        loss.backward()
        total += loss.detach()
        del t_logits, s_logits
    torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    total = float(total)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if profiler is not None:
        profiler.__exit__(None, None, None)
        os.makedirs(os.path.dirname(a.profile_out) or ".", exist_ok=True)
        profiler.export_chrome_trace(a.profile_out)
        profiler = None
        continue  # the profiled step's time is not a steady-state sample
    rows.append((a.global_batch * a.seq / seconds, total))
    index += (world - 1) * accumulation
steady = rows[a.skip:] or rows
tps = sum(r[0] for r in steady) / len(steady)
if rank == 0:
    print(json.dumps({"bench": "distill_step", "impl": "pytorch-ddp" + ("+compile" if a.compile else ""),
                      "scheme": a.scheme, "gpus": world, "tokens_per_second": round(tps),
                      "tokens_per_second_per_gpu": round(tps / world),
                      "mfu": round(tps * flops / (world * a.peak_tflops * 1e12), 4),
                      "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                      "final_loss": rows[-1][1]}), flush=True)
if world > 1:
    dist.destroy_process_group()
