// Observer statistics and their cross-rank reduction.
#include "quant/observer.h"

#include <algorithm>
#include <cmath>
#include <limits>

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

void Observer::update(const torch::Tensor& units) {
  torch::NoGradGuard no_grad;
  auto v = units.detach().to(torch::kFloat32);
  if (pass_ == 0) {
    // Extremes of fp32 values, kept in fp64 (the running averages are fp64 arithmetic).
    const auto lo = v.amin(1).to(torch::kFloat64), hi = v.amax(1).to(torch::kFloat64);
    if (!seen_) {
      min_ = lo;
      max_ = hi;
    } else if (options_.kind != config::ObserverKind::ema) {
      min_ = torch::minimum(min_, lo);
      max_ = torch::maximum(max_, hi);
    } else {
      min_ = min_ * options_.ema_decay + lo * (1 - options_.ema_decay);
      max_ = max_ * options_.ema_decay + hi * (1 - options_.ema_decay);
    }
    seen_ = true;
    return;
  }
  QT_REQUIRE(v.size(0) == 1, "histogram observers (percentile, mse) observe per-tensor ranges");
  if (absmax_ <= 0) return;
  auto counts = torch::histc(v.abs().flatten(), kBins, 0.0, absmax_).to(torch::kFloat64).cpu().contiguous();
  const auto* c = counts.data_ptr<double>();
  for (int i = 0; i < kBins; ++i) histogram_[i] += c[i];
}

namespace {

// `t` reduced over the ranks with `reduce`, on the host in fp64.
torch::Tensor reduced(const torch::Tensor& t, void (*reduce)(double*, int)) {
  auto host = t.to(torch::kCPU, torch::kFloat64).contiguous().clone();
  reduce(host.data_ptr<double>(), static_cast<int>(host.numel()));
  return host;
}

void reduce_sum(double* values, int n) { dist::allreduce_sum(values, n); }
void reduce_min(double* values, int n) { dist::allreduce_min(values, n); }
void reduce_max(double* values, int n) { dist::allreduce_max(values, n); }

}  // namespace

void Observer::reduce_across_ranks() {
  if (pass_ == 1) {
    dist::allreduce_sum(histogram_.data(), kBins);
    return;
  }
  // A rank without calibration data contributes nothing: neutral extremes, no average.
  const int units = dist::allreduce_max(seen_ ? static_cast<int>(min_.numel()) : 0);
  double seen_ranks = seen_ ? 1 : 0;
  dist::allreduce_sum(&seen_ranks, 1);
  if (seen_ranks == 0) return;  // the same on every rank: nobody saw data
  const auto mine = [&](const torch::Tensor& t, double neutral) {
    return seen_ ? t : torch::full({units}, neutral, torch::kFloat64);
  };
  const double inf = std::numeric_limits<double>::infinity();
  if (options_.kind == config::ObserverKind::ema) {  // running averages: their mean
    min_ = reduced(mine(min_, 0), reduce_sum) / seen_ranks;
    max_ = reduced(mine(max_, 0), reduce_sum) / seen_ranks;
  } else {  // running extremes: the extremes
    min_ = reduced(mine(min_, inf), reduce_min);
    max_ = reduced(mine(max_, -inf), reduce_max);
  }
  seen_ = true;
  if (min_.numel() == 1) absmax_ = std::max(std::abs(min_.item<double>()), std::abs(max_.item<double>()));
}

double Observer::absmax() const {
  if (!seen_) return 0.0;
  return std::max(min_.abs().max().item<double>(), max_.abs().max().item<double>());
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

std::pair<torch::Tensor, torch::Tensor> Observer::range(const QuantArgs& args) const {
  QT_REQUIRE(seen_, "an observer saw no data during calibration");
  const auto column = [](const torch::Tensor& t) { return t.to(torch::kCPU, torch::kFloat32).reshape({-1, 1}); };
  if (options_.kind == config::ObserverKind::minmax || options_.kind == config::ObserverKind::ema)
    return {column(min_), column(max_)};
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
    const double half_levels = args.is_float() ? args.grid_max() : (args.qmax() - args.qmin()) / 2.0;
    clip = mse_optimal_clip(histogram_, absmax_, half_levels);
  }
  return {torch::full({1, 1}, -clip), torch::full({1, 1}, clip)};
}

}  // namespace qtrain::quant
