// Dispatch of the PTQ methods, with activation quantization bypassed meanwhile.
#include "quant/ptq.h"

#include "common/error.h"
#include "quant/awq.h"
#include "quant/gptq.h"
#include "quant/quantized_model.h"
#include "quant/smoothquant.h"

namespace qtrain::quant {

void run_ptq(model::CausalLMImpl& model, const PtqOptions& options, const std::function<void()>& run_batches) {
  if (options.method == "rtn") return;
  auto layers = fake_quant_layers(model);
  for (auto& [name, layer] : layers) layer->set_activation_bypass(true);
  if (options.method == "gptq") {
    run_gptq(model, {options.gptq_dampening, options.gptq_block_size, options.gptq_act_order}, run_batches,
             options.hold);
  } else if (options.method == "smoothquant") {
    run_smoothquant(model, options.smoothquant_alpha, run_batches, options.hold);
  } else if (options.method == "awq") {
    run_awq(model, options.awq_grid, run_batches, options.hold);
  } else {
    throw Error("unknown PTQ method '" + options.method + "'").key("quant.method").expected("rtn|gptq|awq|smoothquant");
  }
  for (auto& [name, layer] : layers) layer->set_activation_bypass(false);
}

}  // namespace qtrain::quant
