// SmoothQuant scale computation and folding.
#include "quant/smoothquant.h"

#include "quant/smoothing.h"

namespace qtrain::quant {

void run_smoothquant(model::CausalLMImpl& model, double alpha, const std::function<void()>& run_batches,
                     const std::function<std::shared_ptr<void>(int)>& hold) {
  auto pairs = smoothing_pairs(model);
  const auto stats = collect_channel_statistics(pairs, run_batches, 0);
  for (size_t i = 0; i < pairs.size(); ++i) {
    const auto held = hold ? hold(model::decoder_layer_of(pairs[i].name)) : nullptr;
    torch::Tensor weight_max;
    for (auto* c : pairs[i].consumers) {
      auto m = std::get<0>(c->weight.detach().abs().to(torch::kFloat32).max(0));
      weight_max = weight_max.defined() ? torch::maximum(weight_max, m) : m;
    }
    auto s = stats[i].absmax.clamp_min(1e-5).pow(alpha) / weight_max.clamp_min(1e-5).pow(1.0 - alpha);
    apply_smoothing(pairs[i], s.clamp_min(1e-5));
  }
}

}  // namespace qtrain::quant
