// The one split of a model's state into its own weights (the parameters under their Hugging
// Face names: what a checkpoint of the unquantized model holds) and the quantizer state that
// quant/ attaches to it: fake quantization's scales, zero points, flags, learned scales and
// observer statistics under "<linear>.quant." (quantized_model.h), and the KV-cache
// quantizers' scales under "<attention>.kv_cache." (kv_cache_quant.h). Checkpoints, exports,
// parameter counts and weight decay all split by this rule.
#pragma once
#include <string>

#include "model/causal_lm.h"
#include "model/safetensors.h"

namespace qtrain::quant {

// Whether a parameter or buffer name belongs to quantizer state.
bool is_quantizer_state(const std::string& name);

struct ModelState {
  model::NamedTensors weights;    // parameters that are not quantizer state, in registration order
  model::NamedTensors quantizer;  // quantizer parameters (learned scales), then quantizer buffers
};
ModelState split_state(model::CausalLMImpl& model);

}  // namespace qtrain::quant
