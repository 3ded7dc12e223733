// How much each prunable unit (MLP channel, KV group; prune/masks.h) matters, per layer;
// higher = keep. Three estimates (docs/pruning.md):
//   activation  Minitron (Muralidharan et al. 2024): an MLP channel's mean |h_j| over the
//               calibration tokens, h = silu(gate(x)) * up(x) (down_proj's input); a query
//               head's mean L2 norm of its attention output (o_proj's input, per token), a KV
//               group's the sum over its query heads;
//   taylor      first order (Molchanov et al. 2019): sum over the unit's weights of
//               |w * dL/dw|, summed over calibration batches, L the job's loss;
//   magnitude   the L2 norm of all the unit's weights (and biases).
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
};

Importance magnitude_importance(model::CausalLMImpl& model);

// `run_forward()` pushes this rank's calibration batches through the model (no gradients).
Importance activation_importance(model::CausalLMImpl& model, const std::function<void()>& run_forward);

// `run_backward(after_batch)`: for each of this rank's calibration batches, zero the
// gradients, compute the loss, backward, then call after_batch().
using BackwardPasses = std::function<void(const std::function<void()>& after_batch)>;
Importance taylor_importance(model::CausalLMImpl& model, const BackwardPasses& run_backward);

}  // namespace qtrain::prune
