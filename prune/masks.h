// Structured pruning masks over the axes that Minitron prunes (Muralidharan et al. 2024;
// Sreenivas et al. 2024): per decoder layer, the MLP intermediate channels, the KV groups (a
// kv head with the query heads that share it under GQA) and, in a sparse layer, the experts
// that are kept; over the model, the decoder layers (depth) and the hidden (embedding)
// channels. Masks are registered bool buffers ("layers.<i>.mlp_channels",
// "layers.<i>.kv_groups", "layers.<i>.experts", "depth", "hidden"; true = kept), so they
// travel in checkpoints. What one unit covers (docs/pruning.md):
//   MLP channel j:  gate_proj and up_proj row j (and bias j), down_proj column j;
//   KV group g:     k_proj and v_proj rows of kv head g, q_proj rows of its query heads
//                   (and those bias entries), o_proj columns of its query heads;
//   expert e:       the router never chooses it (its logit is -inf: SparseMoeImpl::
//                   set_kept_experts), so it computes nothing; its router row and weights go
//                   at export;
//   layer i:        o_proj and every down_proj of the layer (weights and biases) at zero, so
//                   that the block adds nothing to the residual stream: it is the identity;
//   hidden channel j: embedding column j, row j of every o_proj and down_proj (and bias), so
//                   that the residual stream's channel j is always zero; column j of every
//                   linear that reads the stream, entry j of every norm weight; the norms
//                   divide by the kept channels (RMSNormImpl::kept_dims), as the smaller
//                   model's do.
// With those weights at zero, the unit contributes exactly nothing to the model's output,
// which is why removing it at export (prune/compact.h) changes no number.
#pragma once
#include <torch/torch.h>

#include <limits>
#include <string>
#include <vector>

#include "model/causal_lm.h"
#include "prune/importance.h"

namespace qtrain::prune {

class LayerMasksImpl : public torch::nn::Module {
 public:
  // `experts` 0 for a dense layer (then no experts mask is registered).
  LayerMasksImpl(int64_t intermediate_size, int64_t kv_heads, int64_t experts);
  torch::Tensor mlp_channels;  // [intermediate_size] bool
  torch::Tensor kv_groups;     // [num_key_value_heads] bool
  torch::Tensor experts;       // [num_experts] bool in a sparse layer, undefined in a dense one
};
TORCH_MODULE(LayerMasks);

class StructuredMasksImpl : public torch::nn::Module {
 public:
  // All kept, on `device`.
  StructuredMasksImpl(const model::ModelConfig& config, torch::Device device);
  int64_t num_layers() const { return static_cast<int64_t>(layers_->size()); }
  LayerMasksImpl& layer(int64_t i) { return *layers_[i]->as<LayerMasksImpl>(); }
  const LayerMasksImpl& layer(int64_t i) const { return *layers_->ptr(i)->as<LayerMasksImpl>(); }
  // Kept units per layer; sizes are uniform over layers (an HF config has one
  // intermediate_size, one num_key_value_heads and one num_experts), checked here.
  int64_t kept_channels() const;
  int64_t kept_kv_groups() const;
  int64_t kept_experts() const;  // 0 for a dense model
  int64_t kept_layers() const;
  int64_t kept_hidden() const;
  bool any_pruned() const;
  bool layers_pruned() const { return kept_layers() < num_layers(); }
  bool hidden_pruned() const { return kept_hidden() < hidden.numel(); }
  bool experts_pruned() const;

  torch::Tensor depth;   // [num_hidden_layers] bool: the decoder layers kept
  torch::Tensor hidden;  // [hidden_size] bool: the residual stream's channels kept

 private:
  torch::nn::ModuleList layers_{nullptr};
};
TORCH_MODULE(StructuredMasks);

// The units to keep on each axis (per layer for channels, KV groups and experts); an axis
// left at its default keeps what it keeps now.
struct KeptCounts {
  static constexpr int64_t all = std::numeric_limits<int64_t>::max();
  int64_t channels = all, kv_groups = all, experts = all, layers = all, hidden = all;
};
KeptCounts kept_counts(const StructuredMasksImpl& masks);

// Keeps, on every axis, the `kept` units of highest importance among those kept now (per
// layer for channels, KV groups and experts; over the model for layers and hidden
// channels): masks only ever grow, a pruned unit never comes back. An axis whose count is
// not below today's is left alone and needs no scores. Returns true when a mask changed.
bool grow_masks(StructuredMasksImpl& masks, const Importance& importance, const KeptCounts& kept);

// One prunable weight or bias of the model with the 0/1 factor that keeps its unpruned
// entries, broadcastable to it: rows [out, 1], columns [1, in], biases [out].
struct MaskedTensor {
  std::string name;      // Hugging Face name, e.g. model.layers.0.mlp.down_proj.weight
  torch::Tensor tensor;  // the model's parameter
  torch::Tensor keep;    // fp32 on the parameter's device
};
std::vector<MaskedTensor> masked_tensors(model::CausalLMImpl& model, const StructuredMasksImpl& masks);

// Multiplies every pruned weight and bias entry by zero, in place.
void apply_masks(model::CausalLMImpl& model, const StructuredMasksImpl& masks);

// The model's forward-side state of the masks, which no weight holds: the routers' kept
// experts and the norms' kept channels (undone where nothing is pruned).
void apply_forward_masks(model::CausalLMImpl& model, const StructuredMasksImpl& masks);

// The indices of the kept rows of q_proj (= kept columns of o_proj) and of k_proj/v_proj
// for a layer's kept KV groups, as int64 on the mask's device.
torch::Tensor kept_query_rows(const torch::Tensor& kv_groups, int64_t groups, int64_t head_dim);
torch::Tensor kept_kv_rows(const torch::Tensor& kv_groups, int64_t head_dim);

}  // namespace qtrain::prune
