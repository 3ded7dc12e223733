// What SmoothQuant and AWQ share: the places where a per-input-channel scale s can be moved
// between a layer's inputs and its weights without changing what the model computes. Each
// "smoothing pair" is a producer whose output channels can be divided by s (an RMSNorm's
// weight, or up_proj's rows) and the quantized linears that consume that output, whose
// weight columns are multiplied by s.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "model/causal_lm.h"
#include "quant/fake_quant_linear.h"

namespace qtrain::quant {

struct SmoothingPair {
  std::string name;                      // e.g. "model.layers.0.input_layernorm"
  torch::Tensor producer_weight;         // [channels] norm weight, or [channels, in] up_proj weight
  torch::Tensor producer_bias;           // undefined, or [channels]
  std::vector<model::LinearImpl*> consumers;
  std::vector<FakeQuantLinear*> quantizers;
};

// The pairs of a Llama-family model whose consumers are all fake-quantized with weights.
std::vector<SmoothingPair> smoothing_pairs(model::CausalLMImpl& model);

// Divides the producer's channels by s and multiplies the consumers' columns by s.
void apply_smoothing(SmoothingPair& pair, const torch::Tensor& s);

// Per input channel of each pair (same order): statistics of the consumers' input over the
// calibration batches, reduced over ranks: the max |x|, the mean |x|, and up to
// `sample_rows` rows of x from this rank (for AWQ's search).
struct ChannelStatistics {
  torch::Tensor absmax, absmean, sample;
};
std::vector<ChannelStatistics> collect_channel_statistics(std::vector<SmoothingPair>& pairs,
                                                          const std::function<void()>& run_batches,
                                                          int64_t sample_rows);

}  // namespace qtrain::quant
