// The mixture-of-experts MLP of Qwen3-MoE and Mixtral (transformers' Qwen3MoeSparseMoeBlock
// and MixtralSparseMoeBlock, v4.57): a linear router `gate` (hidden -> experts, no bias), a
// softmax over the experts in fp32, the top-k of it, renormalised over the k where the family
// does (Mixtral always, Qwen3-MoE with norm_topk_prob), cast to the input dtype; each expert a
// SwiGLU MLP, computed only on the tokens routed to it; the outputs weighted and summed.
// Checkpoint names: Qwen3-MoE mlp.gate, mlp.experts.N.{gate,up,down}_proj; Mixtral
// block_sparse_moe.gate, block_sparse_moe.experts.N.{w1,w3,w2} (w1 gate, w3 up, w2 down).
#pragma once
#include <torch/torch.h>

#include <vector>

#include "model/layers.h"
#include "model/model_config.h"

namespace qtrain::model {

// The load-balancing loss's gradient, handed to each sparse layer's router probabilities
// inside the layer's own forward graph, so that it also reaches the routers where that graph
// lives only inside the layer (ZeRO-3's gathered layers, activation checkpointing's re-run):
// d loss / d p[t, e] = per_expert[e] for every token of every sparse layer, times
// `upstream`, the gradient that reaches the loss term (its weight over the micro-batches),
// which is set at the start of the backward (distill/distill_loss.cpp).
struct LoadBalancingGradient {
  torch::Tensor per_expert;  // [experts] fp32, on the router's device
  double upstream = 0;
  bool seeded = false;
};

// What the router did in one forward, kept while recording is on: the softmax over all
// experts [tokens, experts] (fp32) and the chosen experts [tokens, k].
struct Routing {
  torch::Tensor probabilities;
  torch::Tensor selected;
};

class SparseMoeImpl : public torch::nn::Module {
 public:
  explicit SparseMoeImpl(const ModelConfig& c);
  torch::Tensor forward(const torch::Tensor& x);  // [..., hidden] -> [..., hidden]
  Linear gate{nullptr};
  std::vector<MLP> experts;  // registered as experts.N
  int64_t top_k;
  bool norm_topk_prob;

  // The module's name in its decoder layer ("mlp", Mixtral's "block_sparse_moe") and the
  // names of its experts' linears.
  static const char* checkpoint_name(const ModelConfig& c);
  const char* checkpoint_name() const { return mixtral_ ? "block_sparse_moe" : "mlp"; }
  MlpNames expert_names() const { return mixtral_ ? MlpNames{"w1", "w3", "w2"} : MlpNames{}; }

  // Expert pruning (prune/masks.h): experts outside `kept` ([experts] bool) get a router
  // logit of -inf, so that the softmax and the top-k run over the kept ones exactly as in
  // the model without them. Undefined: all kept. Not saved (the masks are).
  void set_kept_experts(torch::Tensor kept);
  // While set, a forward with gradients adds `gradient` to its router probabilities'
  // gradient (a hook on them). Not saved.
  void set_load_balancing_gradient(std::shared_ptr<LoadBalancingGradient> gradient) {
    balancing_ = std::move(gradient);
  }
  const torch::Tensor& kept_experts() const { return kept_experts_; }
  // Its decoder layer is pruned away (depth pruning): the load-balancing loss leaves it out.
  bool dropped = false;

  // Pruning importance: while on, each forward adds, per expert, the sum over its routed
  // tokens of routing weight x L2 norm of its output (its contribution to the layer's
  // output) to contribution_sums() ([experts] fp64), and the tokens to measured_tokens().
  // Turning it on zeroes both.
  void set_measure_contributions(bool on);
  const torch::Tensor& contribution_sums() const { return contributions_; }
  int64_t measured_tokens() const { return measured_tokens_; }

  // Recording the routing (the load-balancing loss, calibration token counts).
  void set_record_routing(bool on) { record_ = on; }
  const Routing& last_routing() const { return last_; }
  // Tokens routed to each expert in the last forward ([experts] int64, on the host).
  const torch::Tensor& last_expert_tokens() const { return last_counts_; }

 private:
  bool record_ = false, mixtral_ = false, measure_ = false;
  Routing last_;
  torch::Tensor last_counts_;
  torch::Tensor kept_experts_;
  std::shared_ptr<LoadBalancingGradient> balancing_;
  torch::Tensor contributions_;
  int64_t measured_tokens_ = 0;
};
TORCH_MODULE(SparseMoe);

// The sparse MLPs of a model, by layer (empty for a dense model).
class CausalLMImpl;
std::vector<SparseMoeImpl*> sparse_layers(CausalLMImpl& model);

// Switch Transformer's load-balancing loss as transformers' load_balancing_loss_func (v4.57)
// computes it over the routings of all sparse layers, concatenated by token: experts times
// the sum over experts of (the fraction of top-k slots routed to it, per slot) times (its
// mean router probability). k at perfect balance; no attention mask (qtrain trains on full
// windows). Pruned experts (probability 0, no tokens) add nothing: `experts` is the count the
// model without them has.
torch::Tensor load_balancing_loss(const std::vector<Routing>& routings, int64_t experts);
// Its gradient with respect to each routing probability, the same for every token of every
// layer: experts x (top-k slots routed to e) / N^2, N = the tokens of all layers together.
torch::Tensor load_balancing_gradient(const std::vector<Routing>& routings, int64_t experts);

}  // namespace qtrain::model
