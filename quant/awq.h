// AWQ (Lin et al., "AWQ: Activation-aware Weight Quantization", MLSys 2024): per smoothing
// pair, scale the weight columns by s = mean|x|^a (normalised) and the producer by 1/s,
// with `a` chosen on a grid over [0, 1) to minimise the squared error of the consumers'
// outputs on calibration inputs when their weights are quantized; salient channels then
// lose less to rounding.
#pragma once
#include <functional>
#include <memory>

#include "model/causal_lm.h"

namespace qtrain::quant {

// `hold`: HoldLayer (ptq.h), for a sharded model.
void run_awq(model::CausalLMImpl& model, int64_t grid, const std::function<void()>& run_batches,
             const std::function<std::shared_ptr<void>(int)>& hold = nullptr);

}  // namespace qtrain::quant
