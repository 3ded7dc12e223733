// Routing, expert dispatch (tokens sorted by expert, one GEMM chain per expert that has any)
// and the load-balancing loss.
#include "model/moe.h"

#include <limits>
#include <string>

#include "common/error.h"
#include "model/causal_lm.h"

namespace qtrain::model {

const char* SparseMoeImpl::checkpoint_name(const ModelConfig& c) {
  return c.model_type == "mixtral" ? "block_sparse_moe" : "mlp";
}

SparseMoeImpl::SparseMoeImpl(const ModelConfig& c)
    : top_k(c.num_experts_per_tok), norm_topk_prob(c.norm_topk_prob), mixtral_(c.model_type == "mixtral") {
  QT_REQUIRE(c.is_moe(), "a sparse MLP for a dense config");
  gate = register_module("gate", Linear(c.hidden_size, c.num_experts, /*bias=*/false));
  const MlpNames names = expert_names();
  auto list = register_module("experts", torch::nn::ModuleList());
  for (int64_t e = 0; e < c.num_experts; ++e) {
    experts.emplace_back(c.hidden_size, c.moe_intermediate_size, /*bias=*/false, names);
    list->push_back(experts.back());
  }
}

void SparseMoeImpl::set_kept_experts(torch::Tensor kept) {
  QT_REQUIRE(!kept.defined() || (kept.numel() == static_cast<int64_t>(experts.size()) &&
                                 kept.sum().item<int64_t>() >= top_k),
             "a sparse MLP must keep at least num_experts_per_tok experts");
  kept_experts_ = kept.defined() ? kept.to(gate->weight.device(), torch::kBool) : kept;
}

void SparseMoeImpl::set_measure_contributions(bool on) {
  measure_ = on;
  measured_tokens_ = 0;
  contributions_ = on ? torch::zeros({static_cast<int64_t>(experts.size())},
                                     torch::dtype(torch::kFloat64).device(gate->weight.device()))
                      : torch::Tensor();
}

torch::Tensor SparseMoeImpl::forward(const torch::Tensor& x) {
  const auto hidden = x.size(-1);
  const auto flat = x.reshape({-1, hidden});
  auto logits = gate(flat).to(torch::kFloat32);
  if (kept_experts_.defined())
    logits = logits.masked_fill(kept_experts_.logical_not(), -std::numeric_limits<float>::infinity());
  const auto probabilities = torch::softmax(logits, /*dim=*/-1);
  if (balancing_ && probabilities.requires_grad())
    probabilities.register_hook([gradient = balancing_](torch::Tensor grad) {
      QT_REQUIRE(gradient->seeded, "the load-balancing gradient reached a router before its weight was known");
      return grad + gradient->per_expert.to(grad.device(), grad.scalar_type()) * gradient->upstream;
    });
  auto [weights, selected] = torch::topk(probabilities, top_k, /*dim=*/-1);
  if (norm_topk_prob) weights = weights / weights.sum(-1, /*keepdim=*/true);
  weights = weights.to(x.scalar_type());
  // Slots (token, j) sorted by expert, stably: each expert's tokens are one contiguous run.
  const auto slot_expert = selected.reshape({-1});
  const auto sorted = std::get<1>(torch::sort(slot_expert, /*stable=*/true, /*dim=*/0, /*descending=*/false));
  const auto token = sorted.div(top_k, "floor");
  const auto slot_weight = weights.reshape({-1}).index_select(0, sorted).unsqueeze(1);
  const auto counts = torch::bincount(slot_expert, {}, static_cast<int64_t>(experts.size())).cpu();
  if (record_) {
    last_ = {probabilities, selected};
    last_counts_ = counts;
  }
  auto out = torch::zeros_like(flat);
  const auto* count = counts.data_ptr<int64_t>();
  int64_t start = 0;
  for (size_t e = 0; e < experts.size(); ++e) {
    const auto n = count[e];
    if (n == 0) continue;
    const auto tokens = token.narrow(0, start, n);
    // In expert order, as transformers adds them: each token's k outputs sum in that order.
    const auto contribution = experts[e]->forward(flat.index_select(0, tokens)) * slot_weight.narrow(0, start, n);
    out.index_add_(0, tokens, contribution);
    if (measure_) contributions_[static_cast<int64_t>(e)] += contribution.detach().to(torch::kFloat64).norm(2, -1).sum();
    start += n;
  }
  if (measure_) measured_tokens_ += flat.size(0);
  return out.reshape(x.sizes());
}

std::vector<SparseMoeImpl*> sparse_layers(CausalLMImpl& model) {
  std::vector<SparseMoeImpl*> out;
  for (const auto& item : *model.model->layers)
    if (auto moe = item->as<DecoderLayerImpl>()->moe) out.push_back(moe.get());
  return out;
}

torch::Tensor load_balancing_loss(const std::vector<Routing>& routings, int64_t experts) {
  QT_REQUIRE(!routings.empty(), "the load-balancing loss needs the routing of at least one sparse layer");
  std::vector<torch::Tensor> probabilities, selected;
  for (const auto& r : routings) {
    probabilities.push_back(r.probabilities);
    selected.push_back(r.selected);
  }
  const auto p = torch::cat(probabilities);                                                   // [N, E]
  const auto mask = torch::one_hot(torch::cat(selected), p.size(1)).to(torch::kFloat32);      // [N, k, E]
  const auto tokens_per_expert = mask.mean(0);                                                // [k, E]
  const auto router_prob_per_expert = p.mean(0);                                             // [E]
  return (tokens_per_expert * router_prob_per_expert.unsqueeze(0)).sum() * static_cast<double>(experts);
}

torch::Tensor load_balancing_gradient(const std::vector<Routing>& routings, int64_t experts) {
  QT_REQUIRE(!routings.empty(), "the load-balancing loss needs the routing of at least one sparse layer");
  std::vector<torch::Tensor> selected;
  int64_t tokens = 0;
  for (const auto& r : routings) {
    selected.push_back(r.selected.reshape({-1}));
    tokens += r.selected.size(0);
  }
  const auto width = routings.front().probabilities.size(1);
  const auto slots = torch::bincount(torch::cat(selected), {}, width).to(torch::kFloat32);
  const double n = static_cast<double>(tokens);
  return slots * (static_cast<double>(experts) / (n * n));
}

}  // namespace qtrain::model
