// Mask buffers, and which entries of which weights each mask governs.
#include "prune/masks.h"

#include <limits>

#include "common/error.h"

namespace qtrain::prune {

LayerMasksImpl::LayerMasksImpl(int64_t intermediate_size, int64_t kv_heads) {
  mlp_channels = register_buffer("mlp_channels", torch::ones({intermediate_size}, torch::kBool));
  kv_groups = register_buffer("kv_groups", torch::ones({kv_heads}, torch::kBool));
}

StructuredMasksImpl::StructuredMasksImpl(const model::ModelConfig& config, torch::Device device) {
  layers_ = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.num_hidden_layers; ++i)
    layers_->push_back(LayerMasks(config.intermediate_size, config.num_key_value_heads));
  to(device);
}

namespace {

int64_t uniform_count(const StructuredMasksImpl& masks, bool mlp) {
  QT_REQUIRE(masks.num_layers() > 0, "pruning masks of a model without layers");
  auto count = [&](int64_t i) {
    const auto& l = masks.layer(i);
    return (mlp ? l.mlp_channels : l.kv_groups).sum().item<int64_t>();
  };
  const int64_t first = count(0);
  for (int64_t i = 1; i < masks.num_layers(); ++i)
    TORCH_CHECK(count(i) == first, "pruning masks must keep the same number of units in every layer");
  return first;
}

torch::Tensor as_factor(const torch::Tensor& keep) { return keep.to(torch::kFloat32); }

}  // namespace

int64_t StructuredMasksImpl::kept_channels() const { return uniform_count(*this, true); }
int64_t StructuredMasksImpl::kept_kv_groups() const { return uniform_count(*this, false); }

bool StructuredMasksImpl::any_pruned() const {
  return kept_channels() < layer(0).mlp_channels.numel() || kept_kv_groups() < layer(0).kv_groups.numel();
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
  auto ranked = score.to(torch::kFloat64).clone().masked_fill(keep.logical_not(), -std::numeric_limits<double>::infinity());
  const auto chosen = std::get<1>(ranked.topk(kept));
  return torch::zeros_like(keep).index_fill(0, chosen, true).to(mask.device());
}

}  // namespace

bool grow_masks(StructuredMasksImpl& masks, const Importance& importance, int64_t kept_channels, int64_t kept_kv_groups) {
  bool changed = false;
  torch::NoGradGuard no_grad;
  for (int64_t i = 0; i < masks.num_layers(); ++i) {
    auto& m = masks.layer(i);
    for (auto [mask, score, kept] : {std::tuple{&m.mlp_channels, importance.mlp_channels.at(i), kept_channels},
                                     std::tuple{&m.kv_groups, importance.kv_groups.at(i), kept_kv_groups}}) {
      const auto next = top_units(*mask, score, kept);
      if (next.equal(*mask)) continue;
      mask->copy_(next);  // in place: the registered buffer stays the same tensor
      changed = true;
    }
  }
  return changed;
}

std::vector<MaskedTensor> masked_tensors(model::CausalLMImpl& model, const StructuredMasksImpl& masks) {
  std::vector<MaskedTensor> out;
  auto add = [&](const std::string& name, const torch::Tensor& t, const torch::Tensor& keep) {
    if (t.defined()) out.push_back({name, t, keep.to(t.device())});
  };
  for (int64_t i = 0; i < masks.num_layers(); ++i) {
    auto* layer = model.model->layers[i]->as<model::DecoderLayerImpl>();
    const auto& m = masks.layer(i);
    const std::string prefix = "model.layers." + std::to_string(i) + ".";
    auto& attn = *layer->self_attn;
    const int64_t groups = attn.num_heads / attn.num_kv_heads;
    const auto q = as_factor(m.kv_groups.repeat_interleave(groups * attn.head_dim));
    const auto kv = as_factor(m.kv_groups.repeat_interleave(attn.head_dim));
    for (auto& [name, linear, rows] : {std::tuple{"q_proj", attn.q_proj, q}, std::tuple{"k_proj", attn.k_proj, kv},
                                       std::tuple{"v_proj", attn.v_proj, kv}}) {
      add(prefix + "self_attn." + name + ".weight", linear->weight, rows.unsqueeze(1));
      add(prefix + "self_attn." + name + ".bias", linear->bias, rows);
    }
    add(prefix + "self_attn.o_proj.weight", attn.o_proj->weight, q.unsqueeze(0));
    auto& mlp = *layer->mlp;
    const auto channels = as_factor(m.mlp_channels);
    for (auto& [name, linear] : {std::pair{"gate_proj", mlp.gate_proj}, std::pair{"up_proj", mlp.up_proj}}) {
      add(prefix + "mlp." + name + ".weight", linear->weight, channels.unsqueeze(1));
      add(prefix + "mlp." + name + ".bias", linear->bias, channels);
    }
    add(prefix + "mlp.down_proj.weight", mlp.down_proj->weight, channels.unsqueeze(0));
  }
  return out;
}

void apply_masks(model::CausalLMImpl& model, const StructuredMasksImpl& masks) {
  torch::NoGradGuard no_grad;
  for (auto& m : masked_tensors(model, masks)) m.tensor.mul_(m.keep);
}

}  // namespace qtrain::prune
