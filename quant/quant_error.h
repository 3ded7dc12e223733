// How far each fake-quantized linear's weight moves under its quantization: the relative
// Frobenius error ||W - Q(W)|| / ||W|| with Q = quant_math.h's fake_quantize and the
// layer's current weight parameters (what the export writes), for the run report's
// histogram (docs/report.md).
#pragma once
#include <string>
#include <vector>

#include "model/causal_lm.h"

namespace qtrain::quant {

struct LayerQuantError {
  std::string name;    // module name, e.g. model.layers.0.mlp.down_proj
  std::string scheme;  // e.g. w4a16-g32
  double relative_error = 0;
};

class FakeQuantLinear;
// The error of one fake-quantized linear (with quantized weights) of weight `weight`.
LayerQuantError weight_quant_error(const std::string& name, FakeQuantLinear& layer, const torch::Tensor& weight);

// One entry per fake-quantized linear with quantized weights, by module name. Pruned
// input columns (FakeQuantLinear::kept_inputs) are left out, as the export leaves them out.
std::vector<LayerQuantError> weight_quant_errors(model::CausalLMImpl& model);

}  // namespace qtrain::quant
