// Forward of the causal LM: embed -> layers -> norm -> lm_head.
#include "model/causal_lm.h"

#include <ATen/CPUGeneratorImpl.h>

#include "common/error.h"

namespace qtrain::model {

DecoderStackImpl::DecoderStackImpl(const ModelConfig& c) {
  embed_tokens = register_module("embed_tokens", Embedding(c.vocab_size, c.hidden_size));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(DecoderLayer(c, i));
  norm = register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps));
}

CausalLMImpl::CausalLMImpl(ModelConfig config)
    : config_(std::move(config)), rotary_(config_.rope, config_.head_dim) {
  model = register_module("model", DecoderStack(config_));
  if (!config_.tie_word_embeddings)
    lm_head = register_module("lm_head", Linear(config_.hidden_size, config_.vocab_size, false));
}

torch::Tensor CausalLMImpl::hidden_states(const torch::Tensor& input_ids, std::vector<torch::Tensor>* layer_outputs,
                                          KvCache* cache) {
  const auto seq = input_ids.size(1);
  const auto offset = cache ? cache->length() : 0;  // position of the first new token
  if (config_.sliding_window && offset + seq > *config_.sliding_window)
    throw Error("sequence of " + std::to_string(offset + seq) + " tokens exceeds the model's sliding window of " +
                std::to_string(*config_.sliding_window) + ", which qtrain does not implement yet")
        .key("sliding_window");
  auto h = model->embed_tokens(input_ids);
  auto [cos, sin] = rotary_.cos_sin(seq, offset, h.device(), h.scalar_type());
  int64_t index = 0;
  for (const auto& module : *model->layers) {
    auto layer = std::dynamic_pointer_cast<DecoderLayerImpl>(module);
    if (index == skipped_layer) {
      QT_REQUIRE(!cache, "a skipped layer with a KV cache");
      if (layer_runner_) h = layer_runner_(index, h, [](const torch::Tensor& x) { return x; });
    } else if (layer_runner_) {
      // Captured by value: a runner may call it again after this function has returned.
      const LayerForward forward = [layer, cos = cos, sin = sin, cache, index](const torch::Tensor& x) {
        return layer->forward(x, cos, sin, cache, index);
      };
      h = layer_runner_(index, h, forward);
    } else {
      h = layer->forward(h, cos, sin, cache, index);
    }
    ++index;
    if (layer_outputs) layer_outputs->push_back(h);
  }
  if (cache) cache->advance(seq);
  return model->norm(h);
}

torch::Tensor CausalLMImpl::forward(const torch::Tensor& input_ids, KvCache& cache) {
  return logits(hidden_states(input_ids, nullptr, &cache));
}

KvCache CausalLMImpl::make_kv_cache(int64_t capacity) const {
  return KvCache(static_cast<int64_t>(model->layers->size()), capacity);
}

const torch::Tensor& CausalLMImpl::lm_head_weight() const {
  return lm_head ? lm_head->weight : model->embed_tokens->weight;
}

torch::Tensor CausalLMImpl::logits(const torch::Tensor& hidden) {
  return lm_head ? lm_head(hidden) : torch::linear(hidden, model->embed_tokens->weight);
}

torch::Tensor CausalLMImpl::forward(const torch::Tensor& input_ids) { return logits(hidden_states(input_ids)); }

ParameterShapes parameter_shapes(CausalLMImpl& m) {
  ParameterShapes out;
  for (const auto& item : m.named_parameters()) out.emplace_back(item.key(), item.value().sizes().vec());
  return out;
}

void for_each_initial_value(const ParameterShapes& shapes, double std, uint64_t seed,
                            const std::function<void(const std::string&, const torch::Tensor&)>& fn) {
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed);
  for (const auto& [name, sizes] : shapes) {
    torch::Tensor value;
    if (name.size() >= 11 && name.compare(name.size() - 11, 11, "norm.weight") == 0)
      value = torch::ones(sizes);
    else if (name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0)
      value = torch::zeros(sizes);
    else
      value = at::normal(0.0, std, sizes, gen);
    fn(name, value);
  }
}

void init_weights(CausalLMImpl& m, double std, uint64_t seed) {
  auto params = m.named_parameters();
  for_each_initial_value(parameter_shapes(m), std, seed,
                         [&](const std::string& name, const torch::Tensor& value) { params[name].copy_(value); });
}

int decoder_layer_of(const std::string& name) {
  static const std::string prefix = "model.layers.";
  if (name.rfind(prefix, 0) != 0) return -1;
  const auto end = name.find('.', prefix.size());
  return std::stoi(name.substr(prefix.size(), end - prefix.size()));
}

}  // namespace qtrain::model
