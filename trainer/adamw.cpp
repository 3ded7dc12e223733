// The AdamW update on flat buffers.
#include "trainer/adamw.h"

#include <cmath>

namespace qtrain::trainer {

AdamW::AdamW(FlatParameters& flat, AdamWOptions options) : flat_(flat), options_(options) {
  exp_avg_ = torch::zeros_like(flat_.values());
  exp_avg_sq_ = torch::zeros_like(flat_.values());
  for (const auto& e : flat_.entries())
    if (e.decay) decayed_.push_back(flat_.values().narrow(0, e.offset, e.numel));
}

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  ++step_;
  auto& p = flat_.values();
  const auto& g = flat_.grads();
  // Decoupled decay first, on the pre-update weights (as torch.optim.AdamW does).
  if (options_.weight_decay != 0 && !decayed_.empty()) at::_foreach_mul_(decayed_, 1.0 - lr * options_.weight_decay);
  exp_avg_.lerp_(g, 1.0 - options_.beta1);
  exp_avg_sq_.mul_(options_.beta2).addcmul_(g, g, 1.0 - options_.beta2);
  const double bias_correction1 = 1.0 - std::pow(options_.beta1, static_cast<double>(step_));
  const double bias_correction2 = 1.0 - std::pow(options_.beta2, static_cast<double>(step_));
  auto denom = (exp_avg_sq_.sqrt() / std::sqrt(bias_correction2)).add_(options_.eps);
  p.addcdiv_(exp_avg_, denom, -lr / bias_correction1);
}

std::vector<std::pair<std::string, torch::Tensor>> AdamW::state_tensors() {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& e : flat_.entries()) {
    out.emplace_back("exp_avg." + e.name, exp_avg_.narrow(0, e.offset, e.numel).view(e.param.sizes()));
    out.emplace_back("exp_avg_sq." + e.name, exp_avg_sq_.narrow(0, e.offset, e.numel).view(e.param.sizes()));
  }
  return out;
}

}  // namespace qtrain::trainer
