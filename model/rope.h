// Rotary position embeddings as transformers computes them (modeling_rope_utils.py):
// inv_freq in fp32 for the default, linear and llama3 types, cos/sin of positions x inv_freq,
// and the rotate-half application to q and k.
#pragma once
#include <torch/torch.h>

#include "model/model_config.h"

namespace qtrain::model {

class RotaryEmbedding {
 public:
  RotaryEmbedding(const RopeConfig& rope, int64_t head_dim);

  // cos and sin for positions [offset, offset + seq_len), shape [seq_len, head_dim], in `dtype`.
  std::pair<torch::Tensor, torch::Tensor> cos_sin(int64_t seq_len, int64_t offset, torch::Device device,
                                                  torch::ScalarType dtype) const;
  const torch::Tensor& inv_freq() const { return inv_freq_; }  // fp32 CPU, [head_dim / 2]
  double attention_scaling() const { return attention_scaling_; }

 private:
  torch::Tensor inv_freq_;
  double attention_scaling_ = 1.0;  // 1 for the supported types; yarn/longrope would change it
};

// x * cos + rotate_half(x) * sin, for x of shape [batch, heads, seq, head_dim]: on CUDA the
// fused kernel (model/cuda/fused_layers.h) unless QTRAIN_MODEL_KERNELS=torch, else the
// LibTorch form, apply_rotary_reference, which the kernel is tested against.
torch::Tensor apply_rotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);
torch::Tensor apply_rotary_reference(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);

}  // namespace qtrain::model
