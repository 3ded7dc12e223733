// Importance estimates: unit sums of element-wise scores, activation observers, rank sums.
#include "prune/importance.h"

#include "common/dist.h"
#include "common/error.h"

namespace qtrain::prune {

namespace {

using Score = std::function<torch::Tensor(const torch::Tensor& param)>;  // element-wise, fp64

model::DecoderLayerImpl& layer_of(model::CausalLMImpl& model, int64_t i) {
  return *model.model->layers[i]->as<model::DecoderLayerImpl>();
}

// Sum of `score` over each MLP channel's weights: gate/up rows, down column, gate/up bias.
torch::Tensor mlp_channel_sums(model::MLPImpl& mlp, const Score& score) {
  auto s = score(mlp.gate_proj->weight).sum(1) + score(mlp.up_proj->weight).sum(1) + score(mlp.down_proj->weight).sum(0);
  if (mlp.gate_proj->bias.defined()) s = s + score(mlp.gate_proj->bias) + score(mlp.up_proj->bias);
  return s;
}

// Sum of `score` over each KV group's weights: q rows of its query heads, k/v rows of its kv
// head, o columns of its query heads, and the q/k/v bias entries. Query head h belongs to
// group h / (heads / kv_heads), as attention's expansion of k and v (transformers' repeat_kv).
torch::Tensor kv_group_sums(model::AttentionImpl& attn, const Score& score) {
  const int64_t kv = attn.num_kv_heads;
  auto per_group = [kv](const torch::Tensor& rows) { return rows.reshape({kv, -1}).sum(1); };
  auto s = per_group(score(attn.q_proj->weight).sum(1)) + per_group(score(attn.k_proj->weight).sum(1)) +
           per_group(score(attn.v_proj->weight).sum(1)) + per_group(score(attn.o_proj->weight).sum(0));
  for (auto* linear : {attn.q_proj.get(), attn.k_proj.get(), attn.v_proj.get()})
    if (linear->bias.defined()) s = s + per_group(score(linear->bias));
  return s;
}

Importance unit_sums(model::CausalLMImpl& model, const Score& score) {
  Importance out;
  torch::NoGradGuard no_grad;
  for (int64_t i = 0; i < static_cast<int64_t>(model.model->layers->size()); ++i) {
    auto& layer = layer_of(model, i);
    out.mlp_channels.push_back(mlp_channel_sums(*layer.mlp, score).cpu());
    out.kv_groups.push_back(kv_group_sums(*layer.self_attn, score).cpu());
  }
  return out;
}

void add_to(Importance& total, const Importance& part) {
  if (total.mlp_channels.empty()) {
    total = part;
    return;
  }
  for (size_t i = 0; i < part.mlp_channels.size(); ++i) {
    total.mlp_channels[i] += part.mlp_channels[i];
    total.kv_groups[i] += part.kv_groups[i];
  }
}

// In-place sum over ranks of every score, and of `extra` counts (one MPI call in all).
void sum_over_ranks(Importance& importance, std::vector<double>* extra = nullptr) {
  std::vector<torch::Tensor*> parts;
  for (auto& t : importance.mlp_channels) parts.push_back(&t);
  for (auto& t : importance.kv_groups) parts.push_back(&t);
  std::vector<torch::Tensor> flat_parts;
  for (auto* p : parts) flat_parts.push_back(p->to(torch::kCPU, torch::kFloat64).contiguous());
  if (extra) flat_parts.push_back(torch::tensor(*extra, torch::kFloat64));
  auto flat = torch::cat(flat_parts).contiguous();
  dist::allreduce_sum(flat.data_ptr<double>(), static_cast<int>(flat.numel()));
  int64_t offset = 0;
  for (auto* p : parts) {
    *p = flat.narrow(0, offset, p->numel()).clone();
    offset += p->numel();
  }
  if (extra)
    for (auto& value : *extra) value = flat[offset++].item<double>();
}

}  // namespace

Importance magnitude_importance(model::CausalLMImpl& model) {
  auto out = unit_sums(model, [](const torch::Tensor& p) { return p.detach().to(torch::kFloat64).square(); });
  for (auto& t : out.mlp_channels) t = t.sqrt();
  for (auto& t : out.kv_groups) t = t.sqrt();
  return out;
}

Importance activation_importance(model::CausalLMImpl& model, const std::function<void()>& run_forward) {
  const auto layers = static_cast<int64_t>(model.model->layers->size());
  Importance sums;
  std::vector<double> tokens(layers, 0.0);
  for (int64_t i = 0; i < layers; ++i) {
    auto& attn = *layer_of(model, i).self_attn;
    const auto options = torch::dtype(torch::kFloat64).device(attn.o_proj->weight.device());
    sums.mlp_channels.push_back(torch::zeros({layer_of(model, i).mlp->down_proj->weight.size(1)}, options));
    sums.kv_groups.push_back(torch::zeros({attn.num_kv_heads}, options));
  }
  model::ObserveInputs observe;
  for (int64_t i = 0; i < layers; ++i) {
    auto& layer = layer_of(model, i);
    observe.watch(*layer.mlp->down_proj, [&sums, &tokens, i](const torch::Tensor& h) {
      const auto flat = h.detach().reshape({-1, h.size(-1)});
      sums.mlp_channels[i] += flat.abs().to(torch::kFloat64).sum(0);
      tokens[i] += static_cast<double>(flat.size(0));
    });
    const int64_t head_dim = layer.self_attn->head_dim, kv_heads = layer.self_attn->num_kv_heads;
    observe.watch(*layer.self_attn->o_proj, [&sums, i, head_dim, kv_heads](const torch::Tensor& o) {
      // o_proj's input is the heads' outputs side by side: [.., heads * head_dim].
      const auto per_head = o.detach().to(torch::kFloat64).reshape({-1, o.size(-1) / head_dim, head_dim}).norm(2, -1);
      sums.kv_groups[i] += per_head.sum(0).reshape({kv_heads, -1}).sum(1);
    });
  }
  {
    torch::NoGradGuard no_grad;
    run_forward();
  }
  sum_over_ranks(sums, &tokens);
  for (int64_t i = 0; i < layers; ++i) {  // means over every rank's tokens
    sums.mlp_channels[i] /= std::max(1.0, tokens[i]);
    sums.kv_groups[i] /= std::max(1.0, tokens[i]);
  }
  return sums;
}

Importance taylor_importance(model::CausalLMImpl& model, const BackwardPasses& run_backward) {
  Importance total;
  const auto first_order = [](const torch::Tensor& p) {
    QT_REQUIRE(p.grad().defined(), "taylor importance needs gradients of every prunable weight");
    return (p.detach() * p.grad()).to(torch::kFloat64).abs();
  };
  run_backward([&] { add_to(total, unit_sums(model, first_order)); });
  if (total.mlp_channels.empty()) total = unit_sums(model, [](const torch::Tensor& p) { return torch::zeros_like(p, torch::kFloat64); });
  sum_over_ranks(total);
  return total;
}

}  // namespace qtrain::prune
