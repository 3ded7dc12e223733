// Fake quantization of the KV cache (what attention caches at inference), after the rotary
// embedding:
//   int8  keys per channel (one static scale per kv head and head_dim channel, calibrated),
//         values per token (dynamic, per kv head and position), as KIVI (Liu et al. 2024)
//         argues for keys' channel outliers and values' per-token structure;
//   fp8   E4M3 keys and values with one static per-tensor scale each: absmax / 448, the
//         k_scale / v_scale that vLLM reads from compressed-tensors checkpoints.
// Only the FP8 cache is exported (vLLM has no int8 KV cache with checkpoint scales); the
// int8 cache is simulated in training and evaluation. Keys and values are tensor quantizers
// (tensor_quantizer.h); static scales come from a min-max observer (the absmax), reduced over
// the ranks by the observers' one rule.
#pragma once
#include <torch/torch.h>

#include <string>

#include "model/causal_lm.h"
#include "config/choices.h"
#include "model/layers.h"
#include "quant/tensor_quantizer.h"

namespace qtrain::quant {

class KvCacheQuant : public model::KvCacheHook {
 public:
  KvCacheQuant(config::KvCache kind, int64_t kv_heads, int64_t head_dim);
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& k, const torch::Tensor& v) override;
  config::KvCache kind() const { return kind_; }
  // Keys: int8 per (kv head, channel), scale [kv_heads, head_dim]; fp8 per tensor, [1].
  // Values: int8 dynamic per token (the stored [1] scale unused); fp8 per tensor, [1].
  // State names: key_scale, value_scale, and one frozen flag for both.
  TensorQuantizer& keys() { return keys_; }
  TensorQuantizer& values() { return values_; }
  const TensorQuantizer& keys() const { return keys_; }
  const TensorQuantizer& values() const { return values_; }
  bool frozen() const { return keys_.is_set(); }

 private:
  config::KvCache kind_;
  TensorQuantizer keys_, values_;
};

// Puts a KvCacheQuant (int8 or fp8) on every attention layer; none does nothing.
void attach_kv_cache_quant(model::CausalLMImpl& model, config::KvCache kind);
// The attached hooks, by layer index.
std::vector<KvCacheQuant*> kv_cache_quantizers(model::CausalLMImpl& model);

}  // namespace qtrain::quant
