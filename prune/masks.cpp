// Mask buffers, and which entries of which weights each mask governs.
#include "prune/masks.h"

#include <limits>

#include "common/error.h"
#include "model/moe.h"

namespace qtrain::prune {

LayerMasksImpl::LayerMasksImpl(int64_t intermediate_size, int64_t kv_heads, int64_t num_experts) {
  mlp_channels = register_buffer("mlp_channels", torch::ones({intermediate_size}, torch::kBool));
  kv_groups = register_buffer("kv_groups", torch::ones({kv_heads}, torch::kBool));
  if (num_experts > 0) experts = register_buffer("experts", torch::ones({num_experts}, torch::kBool));
}

StructuredMasksImpl::StructuredMasksImpl(const model::ModelConfig& config, torch::Device device) {
  layers_ = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.num_hidden_layers; ++i)
    layers_->push_back(LayerMasks(config.intermediate_size, config.num_key_value_heads,
                                  config.is_moe_layer(i) ? config.num_experts : 0));
  depth = register_buffer("depth", torch::ones({config.num_hidden_layers}, torch::kBool));
  hidden = register_buffer("hidden", torch::ones({config.hidden_size}, torch::kBool));
  to(device);
}

namespace {

// The kept count of a per-layer mask, the same in every kept layer that has it (0 if none
// has; a dropped layer's masks do not matter).
int64_t uniform_count(const StructuredMasksImpl& masks, torch::Tensor LayerMasksImpl::*mask, const char* what) {
  QT_REQUIRE(masks.num_layers() > 0, "pruning masks of a model without layers");
  const auto depth = masks.depth.cpu();
  int64_t first = -1;
  for (int64_t i = 0; i < masks.num_layers(); ++i) {
    const auto& m = masks.layer(i).*mask;
    if (!m.defined() || !depth[i].item<bool>()) continue;
    const int64_t count = m.sum().item<int64_t>();
    if (first < 0) first = count;
    TORCH_CHECK(count == first, "pruning masks must keep the same number of ", what, " in every layer");
  }
  return std::max<int64_t>(first, 0);
}

torch::Tensor as_factor(const torch::Tensor& keep) { return keep.to(torch::kFloat32); }

}  // namespace

int64_t StructuredMasksImpl::kept_channels() const {
  return uniform_count(*this, &LayerMasksImpl::mlp_channels, "MLP channels");
}
int64_t StructuredMasksImpl::kept_kv_groups() const {
  return uniform_count(*this, &LayerMasksImpl::kv_groups, "KV groups");
}
int64_t StructuredMasksImpl::kept_experts() const { return uniform_count(*this, &LayerMasksImpl::experts, "experts"); }
int64_t StructuredMasksImpl::kept_layers() const { return depth.sum().item<int64_t>(); }
int64_t StructuredMasksImpl::kept_hidden() const { return hidden.sum().item<int64_t>(); }

bool StructuredMasksImpl::experts_pruned() const {
  for (int64_t i = 0; i < num_layers(); ++i)
    if (layer(i).experts.defined()) return kept_experts() < layer(i).experts.numel();
  return false;
}

bool StructuredMasksImpl::any_pruned() const {
  return kept_channels() < layer(0).mlp_channels.numel() || kept_kv_groups() < layer(0).kv_groups.numel() ||
         experts_pruned() || layers_pruned() || hidden_pruned();
}

KeptCounts kept_counts(const StructuredMasksImpl& masks) {
  return {masks.kept_channels(), masks.kept_kv_groups(), masks.kept_experts(), masks.kept_layers(),
          masks.kept_hidden()};
}

torch::Tensor kept_query_rows(const torch::Tensor& kv_groups, int64_t groups, int64_t head_dim) {
  return kv_groups.repeat_interleave(groups * head_dim).nonzero().reshape({-1});
}

torch::Tensor kept_kv_rows(const torch::Tensor& kv_groups, int64_t head_dim) {
  return kv_groups.repeat_interleave(head_dim).nonzero().reshape({-1});
}

namespace {

// The `kept` highest scores among the units `mask` keeps, as a new mask (same device).
torch::Tensor top_units(const torch::Tensor& mask, const torch::Tensor& score, int64_t kept) {
  const auto keep = mask.cpu();
  if (kept >= keep.sum().item<int64_t>()) return mask;
  QT_REQUIRE(score.defined() && score.numel() == keep.numel(), "pruning importance of the wrong size");
  auto ranked = score.to(torch::kCPU, torch::kFloat64).clone().masked_fill(keep.logical_not(), -std::numeric_limits<double>::infinity());
  const auto chosen = std::get<1>(ranked.topk(kept));
  return torch::zeros_like(keep).index_fill(0, chosen, true).to(mask.device());
}

bool grow(torch::Tensor& mask, const torch::Tensor& score, int64_t kept) {
  if (!mask.defined()) return false;
  const auto next = top_units(mask, score, kept);
  if (next.equal(mask)) return false;
  mask.copy_(next);  // in place: the registered buffer stays the same tensor
  return true;
}

torch::Tensor at_or_undefined(const std::vector<torch::Tensor>& scores, int64_t i) {
  return i < static_cast<int64_t>(scores.size()) ? scores[i] : torch::Tensor();
}

}  // namespace

bool grow_masks(StructuredMasksImpl& masks, const Importance& importance, const KeptCounts& kept) {
  bool changed = false;
  torch::NoGradGuard no_grad;
  for (int64_t i = 0; i < masks.num_layers(); ++i) {
    auto& m = masks.layer(i);
    changed |= grow(m.mlp_channels, at_or_undefined(importance.mlp_channels, i), kept.channels);
    changed |= grow(m.kv_groups, at_or_undefined(importance.kv_groups, i), kept.kv_groups);
    changed |= grow(m.experts, at_or_undefined(importance.experts, i), kept.experts);
  }
  changed |= grow(masks.depth, importance.layers, kept.layers);
  changed |= grow(masks.hidden, importance.hidden, kept.hidden);
  return changed;
}

namespace {

// Keep factors of a linear [out, in]: `rows` [out] and `columns` [in], either undefined for
// "all kept". The weight's factor is their outer product, the bias's the rows'.
struct LinearKeep {
  torch::Tensor rows, columns;
};


}  // namespace

std::vector<MaskedTensor> masked_tensors(model::CausalLMImpl& model, const StructuredMasksImpl& masks) {
  std::vector<MaskedTensor> out;
  auto add = [&](const std::string& name, const torch::Tensor& t, const torch::Tensor& keep) {
    if (t.defined() && keep.defined()) out.push_back({name, t, keep.to(t.device())});
  };
  auto add_linear = [&](const std::string& name, model::LinearImpl& linear, const LinearKeep& keep) {
    torch::Tensor w;
    if (keep.rows.defined()) w = keep.rows.unsqueeze(1);
    if (keep.columns.defined()) w = w.defined() ? w * keep.columns.unsqueeze(0) : keep.columns.unsqueeze(0);
    add(name + ".weight", linear.weight, w);
    add(name + ".bias", linear.bias, keep.rows);
  };
  const auto hidden = masks.hidden_pruned() ? as_factor(masks.hidden) : torch::Tensor();
  const auto depth = as_factor(masks.depth.cpu());
  for (int64_t i = 0; i < masks.num_layers(); ++i) {
    auto* layer = model.model->layers[i]->as<model::DecoderLayerImpl>();
    const auto& m = masks.layer(i);
    const std::string prefix = "model.layers." + std::to_string(i) + ".";
    // What the layer writes into the residual stream: nothing when the layer is dropped.
    auto writes = hidden;
    if (depth[i].item<float>() == 0.0f)  // on the model's device, as the other factors
      writes = torch::zeros({model.config().hidden_size}, masks.depth.options().dtype(torch::kFloat32));
    auto& attn = *layer->self_attn;
    const int64_t groups = attn.num_heads / attn.num_kv_heads;
    const auto q = as_factor(m.kv_groups.repeat_interleave(groups * attn.head_dim));
    const auto kv = as_factor(m.kv_groups.repeat_interleave(attn.head_dim));
    add_linear(prefix + "self_attn.q_proj", *attn.q_proj, {q, hidden});
    add_linear(prefix + "self_attn.k_proj", *attn.k_proj, {kv, hidden});
    add_linear(prefix + "self_attn.v_proj", *attn.v_proj, {kv, hidden});
    add_linear(prefix + "self_attn.o_proj", *attn.o_proj, {writes, q});
    add(prefix + "input_layernorm.weight", layer->input_layernorm->weight, hidden);
    add(prefix + "post_attention_layernorm.weight", layer->post_attention_layernorm->weight, hidden);
    if (layer->mlp) {
      auto& mlp = *layer->mlp;
      const auto channels = as_factor(m.mlp_channels);
      add_linear(prefix + "mlp.gate_proj", *mlp.gate_proj, {channels, hidden});
      add_linear(prefix + "mlp.up_proj", *mlp.up_proj, {channels, hidden});
      add_linear(prefix + "mlp.down_proj", *mlp.down_proj, {writes, channels});
      continue;
    }
    // A sparse layer: the router and every expert read the stream, every expert writes it.
    auto& moe = *layer->moe;
    const auto moe_prefix = prefix + moe.checkpoint_name() + ".";
    add_linear(moe_prefix + "gate", *moe.gate, {torch::Tensor(), hidden});
    const auto names = moe.expert_names();
    for (size_t e = 0; e < moe.experts.size(); ++e) {
      const auto expert = moe_prefix + "experts." + std::to_string(e) + ".";
      auto& mlp = *moe.experts[e];
      add_linear(expert + names.gate, *mlp.gate_proj, {torch::Tensor(), hidden});
      add_linear(expert + names.up, *mlp.up_proj, {torch::Tensor(), hidden});
      add_linear(expert + names.down, *mlp.down_proj, {writes, torch::Tensor()});
    }
  }
  if (hidden.defined()) {
    add("model.embed_tokens.weight", model.model->embed_tokens->weight, hidden.unsqueeze(0));
    add("model.norm.weight", model.model->norm->weight, hidden);
    if (model.lm_head) add("lm_head.weight", model.lm_head->weight, hidden.unsqueeze(0));
  }
  return out;
}

void apply_masks(model::CausalLMImpl& model, const StructuredMasksImpl& masks) {
  torch::NoGradGuard no_grad;
  for (auto& m : masked_tensors(model, masks)) m.tensor.mul_(m.keep);
}

void apply_forward_masks(model::CausalLMImpl& model, const StructuredMasksImpl& masks) {
  const bool experts = masks.experts_pruned();
  const int64_t kept_dims = masks.hidden_pruned() ? masks.kept_hidden() : 0;
  for (int64_t i = 0; i < masks.num_layers(); ++i) {
    auto* layer = model.model->layers[i]->as<model::DecoderLayerImpl>();
    if (layer->moe) {
      layer->moe->set_kept_experts(experts ? masks.layer(i).experts : torch::Tensor());
      layer->moe->dropped = !masks.depth[i].item<bool>();
    }
    layer->input_layernorm->kept_dims = kept_dims;
    layer->post_attention_layernorm->kept_dims = kept_dims;
  }
  model.model->norm->kept_dims = kept_dims;
}

}  // namespace qtrain::prune
