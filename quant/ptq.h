// Post-training quantization methods, run on a model whose linears carry fake quantization:
// they fix weight quantization parameters (and change weights or norms where the method
// does) from calibration activations. Used as the baseline (`qtrain quantize`) and as the
// initialisation of QAT. `run_batches` pushes the calibration data through the model.
//   rtn          round-to-nearest with min-max scales: nothing to do
//   gptq         GPTQ (Frantar et al. 2023), layer by layer (quant/gptq.h)
//   awq          activation-aware scaling (Lin et al. 2024) (quant/awq.h)
//   smoothquant  SmoothQuant alpha migration for W8A8 (Xiao et al. 2023) (quant/smoothquant.h)
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "config/job_config.h"
#include "model/causal_lm.h"

namespace qtrain::quant {

// Where a model's weights are sharded (ZeRO-3): gathers decoder layer `layer` (-1: the rest
// of the model) for reading and changing its weights in place until the handle is dropped,
// the changes then written back. Null: the whole model is at hand. The methods hold one
// layer at a time, so that no rank ever holds the whole model for PTQ.
using HoldLayer = std::function<std::shared_ptr<void>(int layer)>;

// `options`: the method and its parameters (quant.method, quant.gptq_*, ...).
void run_ptq(model::CausalLMImpl& model, const config::PtqSection& options, const std::function<void()>& run_batches,
             const HoldLayer& hold = nullptr);

}  // namespace qtrain::quant
