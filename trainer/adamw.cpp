// The AdamW update on the owned ranges of the flat buffers; moments gathered for checkpoints.
#include "trainer/adamw.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace qtrain::trainer {

AdamW::AdamW(FlatParameters& flat, AdamWOptions options, int rank)
    : flat_(flat), options_(options), rank_(rank), ranges_(flat.owned_ranges(rank)) {
  int64_t owned = 0;
  for (const auto& r : ranges_) owned += r.size();
  exp_avg_ = torch::zeros({owned}, flat_.values().options());
  exp_avg_sq_ = torch::zeros({owned}, flat_.values().options());
  denom_ = torch::empty({std::min(kChunk, owned)}, flat_.values().options());
  int64_t state_offset = 0;
  for (const auto& r : ranges_) {
    params_.push_back(flat_.values_at(r.begin, r.size()));
    grads_.push_back(flat_.grads_at(r.begin, r.size()));
    exp_avgs_.push_back(exp_avg_.narrow(0, state_offset, r.size()));
    exp_avg_sqs_.push_back(exp_avg_sq_.narrow(0, state_offset, r.size()));
    for (size_t i = 0; i < flat_.entries().size(); ++i) {
      const auto& e = flat_.entries()[i];
      const int64_t begin = std::max(e.offset, r.begin), end = std::min(e.offset + e.numel, r.end);
      if (begin >= end) continue;
      pieces_.push_back({i, begin - e.offset, end - begin, state_offset + begin - r.begin});
      if (e.decay) decayed_.push_back(flat_.values_at(begin, end - begin));
    }
    state_offset += r.size();
  }
}

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  ++step_;
  // Decoupled decay first, on the pre-update weights (as torch.optim.AdamW does).
  if (options_.weight_decay != 0 && !decayed_.empty()) at::_foreach_mul_(decayed_, 1.0 - lr * options_.weight_decay);
  const double bias_correction1 = 1.0 - std::pow(options_.beta1, static_cast<double>(step_));
  const double bias_correction2 = 1.0 - std::pow(options_.beta2, static_cast<double>(step_));
  // In chunks, so that the denominator's temporary is one chunk, not a copy of the moments
  // (4 bytes per owned parameter at the peak otherwise).
  for (size_t i = 0; i < ranges_.size(); ++i) {  // one range unless sharded
    const int64_t size = ranges_[i].size();
    for (int64_t begin = 0; begin < size; begin += kChunk) {
      const int64_t length = std::min(kChunk, size - begin);
      const auto g = grads_[i].narrow(0, begin, length), m = exp_avgs_[i].narrow(0, begin, length);
      const auto v = exp_avg_sqs_[i].narrow(0, begin, length), p = params_[i].narrow(0, begin, length);
      m.lerp_(g, 1.0 - options_.beta1);
      v.mul_(options_.beta2).addcmul_(g, g, 1.0 - options_.beta2);
      auto denom = denom_.narrow(0, 0, length);
      at::sqrt_out(denom, v).div_(std::sqrt(bias_correction2)).add_(options_.eps);
      p.addcdiv_(m, denom, -lr / bias_correction1);
    }
  }
}

TensorSlices AdamW::state_slices() {
  TensorSlices out;
  for (const auto& piece : pieces_) {
    const auto& e = flat_.entries()[piece.entry];
    const auto shape = e.param.sizes().vec();
    out.push_back({"exp_avg." + e.name, shape, piece.param_begin, exp_avg_.narrow(0, piece.state_offset, piece.length)});
    out.push_back(
        {"exp_avg_sq." + e.name, shape, piece.param_begin, exp_avg_sq_.narrow(0, piece.state_offset, piece.length)});
  }
  return out;
}

void AdamW::mask_state(const std::string& name, const torch::Tensor& keep) {
  torch::NoGradGuard no_grad;
  const FlatEntry* entry = nullptr;
  for (const auto& e : flat_.entries())
    if (e.name == name) entry = &e;
  QT_REQUIRE(entry, "no optimizer moments for " + name);
  const auto flat_keep = keep.expand(entry->param.sizes()).reshape({-1});  // masks broadcast over rows or columns
  for (const auto& piece : pieces_) {
    if (flat_.entries()[piece.entry].name != name) continue;
    const auto part = flat_keep.narrow(0, piece.param_begin, piece.length).to(exp_avg_.device());
    exp_avg_.narrow(0, piece.state_offset, piece.length).mul_(part);
    exp_avg_sq_.narrow(0, piece.state_offset, piece.length).mul_(part);
  }
}

}  // namespace qtrain::trainer
