// How much each prunable unit (MLP channel, KV group, expert, hidden channel, decoder
// layer; prune/masks.h) matters; higher = keep. Three estimates for the width axes
// (docs/pruning.md):
//   activation  Minitron (Muralidharan et al. 2024): an MLP channel's mean |h_j| over the
//               calibration tokens, h = silu(gate(x)) * up(x) (down_proj's input); a query
//               head's mean L2 norm of its attention output (o_proj's input, per token), a KV
//               group's the sum over its query heads; an expert's mean over all tokens of
//               routing weight x L2 norm of its output (zero where not routed); a hidden
//               channel's mean |n_j| summed over every norm that feeds a linear (n the
//               norm's output: input_layernorm, post_attention_layernorm, the final norm);
//   taylor      first order (Molchanov et al. 2019): sum over the unit's weights of
//               |w * dL/dw|, summed over calibration batches, L the job's loss;
//   magnitude   the L2 norm of all the unit's weights (and biases).
// And two for whole layers (depth):
//   cosine      ShortGPT's block influence (Men et al. 2024): 1 - the mean over tokens of
//               cos(x_i, x_{i+1}), the residual stream before and after the layer;
//   loss        Minitron's: the mean calibration loss of the model without the layer.
// Activation and taylor statistics are summed over all ranks (common/dist.h), so every
// rank gets the same scores; magnitude needs no communication (replicas hold equal weights).
#pragma once
#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "model/causal_lm.h"

namespace qtrain::prune {

struct Importance {
  std::vector<torch::Tensor> mlp_channels;  // per layer [intermediate_size], fp64 on CPU
  std::vector<torch::Tensor> kv_groups;     // per layer [num_key_value_heads], fp64 on CPU
  std::vector<torch::Tensor> experts;       // per layer [num_experts] (undefined in dense layers)
  torch::Tensor hidden;                     // [hidden_size]
  torch::Tensor layers;                     // [num_hidden_layers]; only from layer_importance
};

Importance magnitude_importance(model::CausalLMImpl& model);

// `run_forward(on_batch)` calls on_batch(input_ids) for each of this rank's calibration
// batches (under the job's autocast), which runs the model itself (no gradients).
using ForwardPasses = std::function<void(const std::function<void(const torch::Tensor& input_ids)>& on_batch)>;
Importance activation_importance(model::CausalLMImpl& model, const ForwardPasses& run_forward);

// `run_backward(after_batch)`: for each of this rank's calibration batches, zero the
// gradients, compute the loss, backward, then call after_batch().
using BackwardPasses = std::function<void(const std::function<void()>& after_batch)>;
Importance taylor_importance(model::CausalLMImpl& model, const BackwardPasses& run_backward);

// Depth, [num_hidden_layers] fp64 scores summed over ranks (every rank gets the same).
torch::Tensor cosine_layer_importance(model::CausalLMImpl& model, const ForwardPasses& run_forward);
// `mean_loss()`: this rank's mean calibration loss and its token count, no gradients. Layers
// outside `candidates` (bool [layers]) score +inf (kept).
using MeanLoss = std::function<std::pair<double, double>()>;
torch::Tensor loss_layer_importance(model::CausalLMImpl& model, const torch::Tensor& candidates,
                                    const MeanLoss& mean_loss);

}  // namespace qtrain::prune
