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

  // Recording the routing (the load-balancing loss, calibration token counts).
  void set_record_routing(bool on) { record_ = on; }
  const Routing& last_routing() const { return last_; }
  // Tokens routed to each expert in the last forward ([experts] int64, on the host).
  const torch::Tensor& last_expert_tokens() const { return last_counts_; }

 private:
  bool record_ = false;
  Routing last_;
  torch::Tensor last_counts_;
};
TORCH_MODULE(SparseMoe);

// The sparse MLPs of a model, by layer (empty for a dense model).
class CausalLMImpl;
std::vector<SparseMoeImpl*> sparse_layers(CausalLMImpl& model);

// Switch Transformer's load-balancing loss as transformers' load_balancing_loss_func (v4.57)
// computes it over the routings of all sparse layers, concatenated by token: experts times
// the sum over experts of (the fraction of top-k slots routed to it, per slot) times (its
// mean router probability). k at perfect balance; no attention mask (qtrain trains on full
// windows).
torch::Tensor load_balancing_loss(const std::vector<Routing>& routings, int64_t experts);

}  // namespace qtrain::model
