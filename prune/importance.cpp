// Importance estimates: unit sums of element-wise scores, activation observers, the residual
// stream across each layer, rank sums.
#include "prune/importance.h"

#include <limits>

#include "common/dist.h"
#include "common/error.h"
#include "model/moe.h"

namespace qtrain::prune {

namespace {

using Score = std::function<torch::Tensor(const torch::Tensor& param)>;  // element-wise, fp64

model::DecoderLayerImpl& layer_of(model::CausalLMImpl& model, int64_t i) {
  return *model.model->layers[i]->as<model::DecoderLayerImpl>();
}

int64_t num_layers(model::CausalLMImpl& model) { return static_cast<int64_t>(model.model->layers->size()); }

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

// Sum of `score` over each expert's weights (its three linears) and its router row.
torch::Tensor expert_sums(model::SparseMoeImpl& moe, const Score& score) {
  std::vector<torch::Tensor> sums;
  const auto router = score(moe.gate->weight).sum(1);
  for (size_t e = 0; e < moe.experts.size(); ++e) {
    auto& mlp = *moe.experts[e];
    sums.push_back(score(mlp.gate_proj->weight).sum() + score(mlp.up_proj->weight).sum() +
                   score(mlp.down_proj->weight).sum() + router[static_cast<int64_t>(e)]);
  }
  return torch::stack(sums);
}

// Sum of `score` over each hidden channel's entries: the columns of every linear that reads
// the residual stream, the rows (and bias entries) of every linear that writes it, the
// embedding and lm_head columns, every norm's weight entry.
torch::Tensor hidden_sums(model::CausalLMImpl& model, const Score& score) {
  auto reads = [&](model::LinearImpl& l) { return score(l.weight).sum(0); };
  auto writes = [&](model::LinearImpl& l) {
    auto s = score(l.weight).sum(1);
    return l.bias.defined() ? s + score(l.bias) : s;
  };
  auto s = score(model.model->embed_tokens->weight).sum(0) + score(model.model->norm->weight);
  if (model.lm_head) s = s + reads(*model.lm_head);
  for (int64_t i = 0; i < num_layers(model); ++i) {
    auto& layer = layer_of(model, i);
    auto& attn = *layer.self_attn;
    s = s + score(layer.input_layernorm->weight) + score(layer.post_attention_layernorm->weight) +
        reads(*attn.q_proj) + reads(*attn.k_proj) + reads(*attn.v_proj) + writes(*attn.o_proj);
    if (layer.mlp) {
      s = s + reads(*layer.mlp->gate_proj) + reads(*layer.mlp->up_proj) + writes(*layer.mlp->down_proj);
      continue;
    }
    s = s + reads(*layer.moe->gate);
    for (auto& e : layer.moe->experts) s = s + reads(*e->gate_proj) + reads(*e->up_proj) + writes(*e->down_proj);
  }
  return s;
}

Importance unit_sums(model::CausalLMImpl& model, const Score& score) {
  Importance out;
  torch::NoGradGuard no_grad;
  const auto& c = model.config();
  for (int64_t i = 0; i < num_layers(model); ++i) {
    auto& layer = layer_of(model, i);
    out.mlp_channels.push_back(layer.mlp ? mlp_channel_sums(*layer.mlp, score).cpu()
                                         : torch::zeros({c.intermediate_size}, torch::kFloat64));
    out.kv_groups.push_back(kv_group_sums(*layer.self_attn, score).cpu());
    out.experts.push_back(layer.moe ? expert_sums(*layer.moe, score).cpu() : torch::Tensor());
  }
  out.hidden = hidden_sums(model, score).cpu();
  return out;
}

// Every score of an Importance, in a fixed order (the undefined ones left out).
std::vector<torch::Tensor*> parts_of(Importance& importance) {
  std::vector<torch::Tensor*> parts;
  for (auto* axis : {&importance.mlp_channels, &importance.kv_groups, &importance.experts})
    for (auto& t : *axis)
      if (t.defined()) parts.push_back(&t);
  for (auto* t : {&importance.hidden, &importance.layers})
    if (t->defined()) parts.push_back(t);
  return parts;
}

void add_to(Importance& total, Importance part) {
  if (total.mlp_channels.empty()) {
    total = std::move(part);
    return;
  }
  auto into = parts_of(total);
  const auto from = parts_of(part);
  QT_REQUIRE(into.size() == from.size(), "importance parts differ between batches");
  for (size_t i = 0; i < into.size(); ++i) *into[i] += *from[i];
}

// In-place sum over ranks of every score, and of `extra` counts (one MPI call in all).
void sum_over_ranks(Importance& importance, std::vector<double>* extra = nullptr) {
  const auto parts = parts_of(importance);
  std::vector<torch::Tensor> flat_parts;
  for (auto* p : parts) flat_parts.push_back(p->to(torch::kCPU, torch::kFloat64).contiguous().reshape({-1}));
  if (extra) flat_parts.push_back(torch::tensor(*extra, torch::kFloat64));
  auto flat = torch::cat(flat_parts).contiguous();
  dist::allreduce_sum(flat.data_ptr<double>(), static_cast<int>(flat.numel()));
  int64_t offset = 0;
  for (auto* p : parts) {
    *p = flat.narrow(0, offset, p->numel()).clone().reshape(p->sizes());
    offset += p->numel();
  }
  if (extra)
    for (auto& value : *extra) value = flat[offset++].item<double>();
}

}  // namespace

Importance magnitude_importance(model::CausalLMImpl& model) {
  auto out = unit_sums(model, [](const torch::Tensor& p) { return p.detach().to(torch::kFloat64).square(); });
  for (auto* t : parts_of(out)) *t = t->sqrt();
  return out;
}

Importance activation_importance(model::CausalLMImpl& model, const ForwardPasses& run_forward) {
  const auto layers = num_layers(model);
  const auto& c = model.config();
  const auto options = torch::dtype(torch::kFloat64).device(model.model->embed_tokens->weight.device());
  Importance sums;
  for (int64_t i = 0; i < layers; ++i) {
    auto& layer = layer_of(model, i);
    sums.mlp_channels.push_back(torch::zeros({c.intermediate_size}, options));
    sums.kv_groups.push_back(torch::zeros({layer.self_attn->num_kv_heads}, options));
    sums.experts.push_back(layer.moe ? torch::zeros({static_cast<int64_t>(layer.moe->experts.size())}, options)
                                     : torch::Tensor());
  }
  sums.hidden = torch::zeros({c.hidden_size}, options);
  auto add_hidden = [&sums](const torch::Tensor& normed) {  // a norm's output [.., hidden]
    sums.hidden += normed.detach().reshape({-1, normed.size(-1)}).abs().to(torch::kFloat64).sum(0);
  };
  model::ObserveInputs observe;
  for (int64_t i = 0; i < layers; ++i) {
    auto& layer = layer_of(model, i);
    const int64_t head_dim = layer.self_attn->head_dim, kv_heads = layer.self_attn->num_kv_heads;
    observe.watch(*layer.self_attn->o_proj, [&sums, i, head_dim, kv_heads](const torch::Tensor& o) {
      // o_proj's input is the heads' outputs side by side: [.., heads * head_dim].
      const auto per_head = o.detach().to(torch::kFloat64).reshape({-1, o.size(-1) / head_dim, head_dim}).norm(2, -1);
      sums.kv_groups[i] += per_head.sum(0).reshape({kv_heads, -1}).sum(1);
    });
    observe.watch(*layer.self_attn->q_proj, add_hidden);  // input_layernorm's output
    if (layer.mlp) {
      observe.watch(*layer.mlp->down_proj, [&sums, i](const torch::Tensor& h) {
        sums.mlp_channels[i] += h.detach().reshape({-1, h.size(-1)}).abs().to(torch::kFloat64).sum(0);
      });
      observe.watch(*layer.mlp->gate_proj, add_hidden);  // post_attention_layernorm's output
    } else {
      observe.watch(*layer.moe->gate, add_hidden);
      layer.moe->set_measure_contributions(true);
    }
  }
  std::vector<double> tokens{0.0};
  {
    torch::NoGradGuard no_grad;
    run_forward([&](const torch::Tensor& input_ids) {
      add_hidden(model.hidden_states(input_ids));  // the final norm's output; no logits needed
      tokens[0] += static_cast<double>(input_ids.numel());
    });
  }
  for (int64_t i = 0; i < layers; ++i)
    if (auto& moe = layer_of(model, i).moe) {
      sums.experts[i] += moe->contribution_sums();
      moe->set_measure_contributions(false);
    }
  sum_over_ranks(sums, &tokens);
  for (auto* t : parts_of(sums)) *t /= std::max(1.0, tokens[0]);  // means over every rank's tokens
  return sums;
}

Importance taylor_importance(model::CausalLMImpl& model, const BackwardPasses& run_backward) {
  Importance total;
  // A weight without a gradient got none from this batch (an expert no token was routed to,
  // where gradients are not views of a flat buffer): it scores zero.
  const auto first_order = [](const torch::Tensor& p) {
    if (!p.grad().defined()) return torch::zeros(p.sizes(), torch::dtype(torch::kFloat64).device(p.device()));
    return (p.detach() * p.grad()).to(torch::kFloat64).abs();
  };
  run_backward([&] { add_to(total, unit_sums(model, first_order)); });
  if (total.mlp_channels.empty()) total = unit_sums(model, [](const torch::Tensor& p) { return torch::zeros_like(p, torch::kFloat64); });
  sum_over_ranks(total);
  return total;
}

torch::Tensor cosine_layer_importance(model::CausalLMImpl& model, const ForwardPasses& run_forward) {
  const auto layers = num_layers(model);
  std::vector<double> sums(static_cast<size_t>(layers) + 1, 0.0);  // cosine sums, then tokens
  torch::Tensor cosines;
  {
    torch::NoGradGuard no_grad;
    run_forward([&](const torch::Tensor& input_ids) {
      std::vector<torch::Tensor> outputs;
      outputs.push_back(model.model->embed_tokens(input_ids));
      model.hidden_states(input_ids, &outputs);
      std::vector<torch::Tensor> per_layer;
      for (int64_t i = 0; i < layers; ++i) {
        const auto a = outputs[i].to(torch::kFloat32), b = outputs[i + 1].to(torch::kFloat32);
        per_layer.push_back(torch::cosine_similarity(a, b, /*dim=*/-1, /*eps=*/1e-8).to(torch::kFloat64).sum());
      }
      const auto batch = torch::stack(per_layer).cpu();
      cosines = cosines.defined() ? cosines + batch : batch;
      sums.back() += static_cast<double>(input_ids.numel());
    });
  }
  for (int64_t i = 0; cosines.defined() && i < layers; ++i) sums[i] = cosines[i].item<double>();
  dist::allreduce_sum(sums.data(), static_cast<int>(sums.size()));
  auto out = torch::empty({layers}, torch::kFloat64);
  for (int64_t i = 0; i < layers; ++i) out[i] = 1.0 - sums[i] / std::max(1.0, sums.back());
  return out;
}

torch::Tensor loss_layer_importance(model::CausalLMImpl& model, const torch::Tensor& candidates,
                                    const MeanLoss& mean_loss) {
  const auto layers = num_layers(model);
  const auto candidate = candidates.cpu();
  std::vector<double> sums(2 * static_cast<size_t>(layers), 0.0);  // loss x tokens, tokens
  for (int64_t i = 0; i < layers; ++i) {
    if (!candidate[i].item<bool>()) continue;
    model.skipped_layer = i;
    try {
      const auto [loss, tokens] = mean_loss();
      sums[2 * i] = loss * tokens;
      sums[2 * i + 1] = tokens;
    } catch (...) {
      model.skipped_layer = -1;
      throw;
    }
    model.skipped_layer = -1;
  }
  dist::allreduce_sum(sums.data(), static_cast<int>(sums.size()));
  auto out = torch::full({layers}, std::numeric_limits<double>::infinity(), torch::kFloat64);
  for (int64_t i = 0; i < layers; ++i)
    if (candidate[i].item<bool>()) out[i] = sums[2 * i] / std::max(1.0, sums[2 * i + 1]);
  return out;
}

}  // namespace qtrain::prune
