// SmoothQuant (Xiao et al., ICML 2023): per input channel j of each smoothing pair,
// s_j = max|X_j|^alpha / max|W_j|^(1 - alpha) (W: the consumers' weights stacked), which
// moves activation outliers into the weights before W8A8 quantization.
#pragma once
#include <functional>
#include <memory>

#include "model/causal_lm.h"

namespace qtrain::quant {

// `hold`: HoldLayer (ptq.h), for a sharded model.
void run_smoothquant(model::CausalLMImpl& model, double alpha, const std::function<void()>& run_batches,
                     const std::function<std::shared_ptr<void>(int)>& hold = nullptr);

}  // namespace qtrain::quant
