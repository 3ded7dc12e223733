// Structured pruning masks over the width axes that Minitron prunes (Muralidharan et al.
// 2024): per decoder layer, the MLP intermediate channels and the KV groups (a kv head with
// the query heads that share it under GQA) that are kept. Masks are registered bool buffers
// ("layers.<i>.mlp_channels", "layers.<i>.kv_groups"; true = kept), so they travel in
// checkpoints. What one unit covers (docs/pruning.md):
//   MLP channel j:  gate_proj and up_proj row j (and bias j), down_proj column j;
//   KV group g:     k_proj and v_proj rows of kv head g, q_proj rows of its query heads
//                   (and those bias entries), o_proj columns of its query heads.
// With those weights at zero, the unit contributes exactly nothing to the layer's output,
// which is why removing it at export (prune/compact.h) changes no number.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "model/causal_lm.h"
#include "prune/importance.h"

namespace qtrain::prune {

class LayerMasksImpl : public torch::nn::Module {
 public:
  LayerMasksImpl(int64_t intermediate_size, int64_t kv_heads);
  torch::Tensor mlp_channels;  // [intermediate_size] bool
  torch::Tensor kv_groups;     // [num_key_value_heads] bool
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
  // intermediate_size and one num_key_value_heads), checked here.
  int64_t kept_channels() const;
  int64_t kept_kv_groups() const;
  bool any_pruned() const;

 private:
  torch::nn::ModuleList layers_{nullptr};
};
TORCH_MODULE(StructuredMasks);

// Keeps, in every layer, the `kept_channels` MLP channels and `kept_kv_groups` KV groups of
// highest importance among those kept now: masks only ever grow, a pruned unit never comes
// back. Returns true when a mask changed.
bool grow_masks(StructuredMasksImpl& masks, const Importance& importance, int64_t kept_channels, int64_t kept_kv_groups);

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

// The indices of the kept rows of q_proj (= kept columns of o_proj) and of k_proj/v_proj
// for a layer's kept KV groups, as int64 on the mask's device.
torch::Tensor kept_query_rows(const torch::Tensor& kv_groups, int64_t groups, int64_t head_dim);
torch::Tensor kept_kv_rows(const torch::Tensor& kv_groups, int64_t head_dim);

}  // namespace qtrain::prune
