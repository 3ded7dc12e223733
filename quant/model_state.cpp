// The split of a model's state into weights and quantizer state.
#include "quant/model_state.h"

namespace qtrain::quant {

bool is_quantizer_state(const std::string& name) {
  return name.find(".quant.") != std::string::npos || name.find(".kv_cache.") != std::string::npos;
}

ModelState split_state(model::CausalLMImpl& model) {
  ModelState out;
  for (auto& item : model.named_parameters())
    (is_quantizer_state(item.key()) ? out.quantizer : out.weights).emplace_back(item.key(), item.value());
  for (auto& item : model.named_buffers())
    if (is_quantizer_state(item.key())) out.quantizer.emplace_back(item.key(), item.value());
  return out;
}

}  // namespace qtrain::quant
