// Dispatch of the PTQ methods, with activation and KV-cache quantization bypassed meanwhile.
#include "quant/ptq.h"

#include "common/error.h"
#include "quant/awq.h"
#include "quant/gptq.h"
#include "quant/quantized_model.h"
#include "quant/smoothquant.h"

namespace qtrain::quant {

void run_ptq(model::CausalLMImpl& model, const config::PtqSection& options, const std::function<void()>& run_batches,
             const HoldLayer& hold) {
  if (options.method == config::PtqMethod::rtn) return;
  // Activations (linear inputs, the KV cache) pass unquantized while the methods measure
  // them: their static scales are calibrated afterwards, on the changed weights.
  const auto activations = activation_quantizers(model);
  for (auto* q : activations) q->set_bypass(true);
  switch (options.method) {
    case config::PtqMethod::rtn: break;
    case config::PtqMethod::gptq: {
      GptqOptions gptq;
      gptq.dampening = options.gptq_dampening;
      gptq.block_size = options.gptq_block_size;
      gptq.act_order = options.gptq_act_order;
      run_gptq(model, gptq, run_batches, hold);
      break;
    }
    case config::PtqMethod::smoothquant: run_smoothquant(model, options.smoothquant_alpha, run_batches, hold); break;
    case config::PtqMethod::awq: run_awq(model, options.awq_grid, run_batches, hold); break;
  }
  for (auto* q : activations) q->set_bypass(false);
}

}  // namespace qtrain::quant
