// The decoder-only causal language model: embeddings, decoder layers, final norm and
// lm_head (or the tied embedding matrix). Module names match Hugging Face's
// LlamaForCausalLM, so named_parameters() are the checkpoint's tensor names.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "model/kv_cache.h"
#include "model/layers.h"
#include "model/model_config.h"
#include "model/rope.h"

namespace qtrain::model {

class DecoderStackImpl : public torch::nn::Module {  // "model." in HF names
 public:
  explicit DecoderStackImpl(const ModelConfig& c);
  Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};
};
TORCH_MODULE(DecoderStack);

// Something that runs each decoder layer's forward for the model: sharded weights gathered
// around it, activation checkpointing (trainer/sharded_model.h). It must call `forward`
// (the layer's own forward, safe to call later, e.g. again in backward) and return its
// output. The model does not know what it does; without one, layers run directly.
using LayerForward = std::function<torch::Tensor(const torch::Tensor& hidden)>;
using LayerRunner =
    std::function<torch::Tensor(int64_t layer, const torch::Tensor& hidden, const LayerForward& forward)>;

class CausalLMImpl : public torch::nn::Module {
 public:
  explicit CausalLMImpl(ModelConfig config);

  // input_ids [batch, seq] (int64) -> logits [batch, seq, vocab] in the model's dtype.
  torch::Tensor forward(const torch::Tensor& input_ids);
  // Incremental decoding: input_ids [batch, new] are the positions after the `cache.length()`
  // cached ones; returns their logits [batch, new, vocab] and appends their keys and values
  // to the cache. Prefill is the first call on an empty cache.
  torch::Tensor forward(const torch::Tensor& input_ids, KvCache& cache);
  // Final normalised hidden states [batch, seq, hidden]. If `layer_outputs` is given, the
  // residual stream after each decoder layer is appended to it (for hidden-state losses).
  // With `cache`, as forward(input_ids, cache).
  torch::Tensor hidden_states(const torch::Tensor& input_ids, std::vector<torch::Tensor>* layer_outputs = nullptr,
                              KvCache* cache = nullptr);
  // An empty cache for this model holding up to `capacity` positions.
  KvCache make_kv_cache(int64_t capacity) const;
  // hidden [.., hidden] -> logits [.., vocab].
  torch::Tensor logits(const torch::Tensor& hidden);
  const torch::Tensor& lm_head_weight() const;
  void set_layer_runner(LayerRunner runner) { layer_runner_ = std::move(runner); }
  // A decoder layer whose forward is the identity (its output is its input), -1 for none:
  // the model without that layer, for depth-pruning importance (prune/importance.h).
  // Its weights are still gathered as usual (a layer runner sees the layer as run).
  int64_t skipped_layer = -1;

  const ModelConfig& config() const { return config_; }
  DecoderStack model{nullptr};
  Linear lm_head{nullptr};  // null when the embeddings are tied

 private:
  ModelConfig config_;
  RotaryEmbedding rotary_;
  LayerRunner layer_runner_;
};
TORCH_MODULE(CausalLM);

// Random weights for tests and benchmarks: normal(0, std) matrices, unit norms, zero biases.
void init_weights(CausalLMImpl& model, double std, uint64_t seed);

// The parameters' names and shapes, in registration order.
using ParameterShapes = std::vector<std::pair<std::string, std::vector<int64_t>>>;
ParameterShapes parameter_shapes(CausalLMImpl& model);
// The values init_weights gives to a model with these parameters, made one at a time, in
// order, each passed to fn(name, value) and then dropped (for a Skeleton, layers.h).
void for_each_initial_value(const ParameterShapes& shapes, double std, uint64_t seed,
                            const std::function<void(const std::string&, const torch::Tensor&)>& fn);

// The decoder layer a parameter, buffer or module belongs to by its Hugging Face name
// ("model.layers.<i>." -> i), -1 for everything outside the layers (embeddings, final norm,
// lm_head).
int decoder_layer_of(const std::string& name);

// The grain at which ZeRO-3 gathers a model's weights and an export streams them: unit -1
// (everything outside the decoder layers), then each decoder layer i. `gather(unit, true)`
// makes a unit's weights whole, `gather(unit, false)` lets them go again.
using GatherUnit = std::function<void(int unit, bool gathered)>;
// Holds one unit whole for its scope, however the scope ends; nothing when `gather` is empty.
class HeldUnit {
 public:
  HeldUnit(const GatherUnit& gather, int unit) : gather_(gather), unit_(unit) {
    if (gather_) gather_(unit_, true);
  }
  ~HeldUnit() {
    if (gather_) gather_(unit_, false);
  }
  HeldUnit(const HeldUnit&) = delete;
  HeldUnit& operator=(const HeldUnit&) = delete;

 private:
  const GatherUnit& gather_;
  int unit_;
};

}  // namespace qtrain::model
