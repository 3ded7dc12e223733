// Relative weight error per fake-quantized linear, through the one quantization arithmetic.
#include "quant/quant_error.h"

#include "quant/quantized_model.h"

namespace qtrain::quant {

LayerQuantError weight_quant_error(const std::string& name, FakeQuantLinear& layer, const torch::Tensor& weight) {
  torch::NoGradGuard no_grad;
  auto w = weight.detach().to(torch::kFloat32);
  if (layer.kept_inputs().defined()) w = w.index_select(1, layer.kept_inputs().to(w.device()));
  const auto q = fake_quantize(w, layer.weights().qparams(w), *layer.scheme().weights);
  const double norm = w.norm().item<double>();
  return {name, layer.scheme().name, norm > 0 ? (w - q).norm().item<double>() / norm : 0.0};
}

std::vector<LayerQuantError> weight_quant_errors(model::CausalLMImpl& model) {
  std::vector<LayerQuantError> out;
  auto modules = model.named_modules("", false);
  for (auto& [name, layer] : fake_quant_layers(model))
    if (layer->scheme().weights) out.push_back(weight_quant_error(name, *layer, modules[name]->as<model::LinearImpl>()->weight));
  return out;
}

}  // namespace qtrain::quant
