// Observer statistics and their cross-rank reduction.
#include "quant/observer.h"

#include <algorithm>
#include <cmath>

#include "common/dist.h"
#include "common/error.h"

namespace qtrain::quant {

namespace {
constexpr int kBins = 2048;
}

void Observer::begin_pass(int pass) {
  pass_ = pass;
  if (pass == 1) histogram_.assign(kBins, 0.0);
}

void Observer::update(const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  auto v = x.detach().to(torch::kFloat32);
  if (pass_ == 0) {
    const double lo = v.min().item<double>(), hi = v.max().item<double>();
    if (!seen_ || options_.kind != config::ObserverKind::ema) {
      min_ = seen_ ? std::min(min_, lo) : lo;
      max_ = seen_ ? std::max(max_, hi) : hi;
    } else {
      min_ = options_.ema_decay * min_ + (1 - options_.ema_decay) * lo;
      max_ = options_.ema_decay * max_ + (1 - options_.ema_decay) * hi;
    }
    seen_ = true;
    return;
  }
  if (absmax_ <= 0) return;
  auto counts = torch::histc(v.abs().flatten(), kBins, 0.0, absmax_).to(torch::kFloat64).cpu().contiguous();
  const auto* c = counts.data_ptr<double>();
  for (int i = 0; i < kBins; ++i) histogram_[i] += c[i];
}

void Observer::reduce_across_ranks() {
  if (pass_ == 0) {
    // EMA ranges are averaged (each rank saw a different stream); min/max are extremes.
    if (options_.kind == config::ObserverKind::ema) {
      double both[2] = {min_, max_};
      dist::allreduce_sum(both, 2);
      min_ = both[0] / dist::world_size();
      max_ = both[1] / dist::world_size();
    } else {
      dist::allreduce_min(&min_, 1);
      dist::allreduce_max(&max_, 1);
    }
    absmax_ = std::max(std::abs(min_), std::abs(max_));
    return;
  }
  dist::allreduce_sum(histogram_.data(), kBins);
}

double mse_optimal_clip(const std::vector<double>& histogram, double absmax, double half_levels) {
  const int bins = static_cast<int>(histogram.size());
  const double width = absmax / bins;
  double best_clip = absmax, best_error = -1;
  for (int candidate = bins / 8; candidate <= bins; ++candidate) {
    const double clip = candidate * width, step = clip / half_levels;
    double error = 0;
    for (int i = 0; i < bins; ++i) {
      if (histogram[i] == 0) continue;
      const double x = (i + 0.5) * width;
      // Inside: rounding error ~ uniform over a step (step^2 / 12); outside: clipped to clip.
      error += histogram[i] * (x <= clip ? step * step / 12.0 : (x - clip) * (x - clip));
    }
    if (best_error < 0 || error < best_error) {
      best_error = error;
      best_clip = clip;
    }
  }
  return best_clip;
}

std::pair<double, double> Observer::range(const QuantArgs& args) const {
  QT_REQUIRE(seen_, "an activation observer saw no data during calibration");
  if (options_.kind == config::ObserverKind::minmax || options_.kind == config::ObserverKind::ema) return {min_, max_};
  double clip = absmax_;
  if (options_.kind == config::ObserverKind::percentile) {
    double total = 0;
    for (double c : histogram_) total += c;
    const double target = total * options_.percentile / 100.0;
    double cumulative = 0;
    for (size_t i = 0; i < histogram_.size(); ++i) {
      cumulative += histogram_[i];
      if (cumulative >= target) {
        clip = (static_cast<double>(i) + 1) * absmax_ / static_cast<double>(histogram_.size());
        break;
      }
    }
  } else {
    const double half_levels = args.is_float() ? 448.0 : (args.qmax() - args.qmin()) / 2.0;
    clip = mse_optimal_clip(histogram_, absmax_, half_levels);
  }
  return {-clip, clip};
}

}  // namespace qtrain::quant
