// AWQ grid search and folding.
#include "quant/awq.h"

#include <algorithm>

#include "common/dist.h"
#include "quant/quant_math.h"
#include "quant/smoothing.h"

namespace qtrain::quant {

namespace {

// Squared output error of the pair's consumers on `x` when weights are scaled by s and
// quantized with their schemes (min-max scales of the scaled weights).
double output_error(const SmoothingPair& pair, const torch::Tensor& x, const torch::Tensor& s) {
  double error = 0;
  const auto xs = x / s;
  for (size_t c = 0; c < pair.consumers.size(); ++c) {
    const auto w = pair.consumers[c]->weight.detach().to(torch::kFloat32);
    const auto& args = *pair.quantizers[c]->scheme().weights;
    const auto scaled = w * s.unsqueeze(0);
    const auto wq = fake_quantize(scaled, compute_qparams(scaled, args, pair.quantizers[c]->scale_dtype()), args);
    error += (x.matmul(w.t()) - xs.matmul(wq.t())).pow(2).sum().item<double>();
  }
  return error;
}

}  // namespace

void run_awq(model::CausalLMImpl& model, int64_t grid, const std::function<void()>& run_batches,
             const std::function<std::shared_ptr<void>(int)>& hold) {
  torch::NoGradGuard no_grad;
  auto pairs = smoothing_pairs(model);
  const auto stats = collect_channel_statistics(pairs, run_batches, 512);
  for (size_t i = 0; i < pairs.size(); ++i) {
    const auto held = hold ? hold(model::decoder_layer_of(pairs[i].name)) : nullptr;
    // Every rank scores the grid on its own samples; the sums decide, so all ranks agree.
    auto scale_for = [&](int64_t k) {
      if (k == 0) return torch::ones_like(stats[i].absmean);
      auto s = stats[i].absmean.clamp_min(1e-4).pow(static_cast<double>(k) / static_cast<double>(grid));
      return s / (s.max() * s.min()).sqrt();
    };
    std::vector<double> errors(grid, 0.0);
    if (stats[i].sample.defined())
      for (int64_t k = 0; k < grid; ++k) errors[k] = output_error(pairs[i], stats[i].sample, scale_for(k));
    dist::allreduce_sum(errors.data(), static_cast<int>(grid));
    const auto best = std::min_element(errors.begin(), errors.end()) - errors.begin();
    apply_smoothing(pairs[i], scale_for(best));
  }
}

}  // namespace qtrain::quant
