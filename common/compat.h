// Every difference between the LibTorch versions we build against (Debian's 1.13 CPU,
// PyTorch 2.x with CUDA) lives here, behind one function each.
#pragma once
#include <torch/torch.h>
#include <torch/version.h>

#define QTRAIN_TORCH_2 (TORCH_VERSION_MAJOR >= 2)

namespace qtrain::compat {

// Causal attention over [batch, heads, seq, head_dim] with kv heads already expanded.
// 2.x: the fused SDPA kernels (flash / memory-efficient on CUDA). 1.13: the plain math
// form with the softmax in fp32, as transformers' eager attention computes it.
inline torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k,
                                      const torch::Tensor& v, double scale) {
#if QTRAIN_TORCH_2
  return at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, /*dropout_p=*/0.0,
                                          /*is_causal=*/true, /*scale=*/scale);
#else
  auto scores = torch::matmul(q, k.transpose(-2, -1)) * scale;
  const auto len_q = q.size(-2), len_k = k.size(-2);
  auto mask = torch::ones({len_q, len_k}, torch::dtype(torch::kBool).device(q.device()))
                  .triu(len_k - len_q + 1);
  scores = scores.masked_fill(mask, -std::numeric_limits<float>::infinity());
  auto probs = torch::softmax(scores, -1, torch::kFloat32).to(q.scalar_type());
  return torch::matmul(probs, v);
#endif
}

inline bool cuda_available() { return torch::cuda::is_available(); }

// Element types that only newer LibTorch can hold: FP8 (2.1+) and wide unsigned ints (2.3+).
// On 1.13 such tensors are read as raw bytes (see model/safetensors.h).
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define QTRAIN_HAS_FLOAT8 1
#else
#define QTRAIN_HAS_FLOAT8 0
#endif
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
#define QTRAIN_HAS_WIDE_UINT 1
#else
#define QTRAIN_HAS_WIDE_UINT 0
#endif

}  // namespace qtrain::compat
