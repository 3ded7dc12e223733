// Observers: they watch a tensor during calibration (a linear's inputs, the KV cache's keys
// and values; tensor_quantizer.h) and produce the static range, per unit of the tensor's
// quantization args, that its scale is computed from. One rule combines the ranks, whatever
// the tensor: each statistic is reduced as what it is, running extremes by min and max,
// running averages (ema) by their mean, histograms by their sum, before the range is taken,
// so that every rank gets the same scale. Ranges are returned on the host, so that a scale
// is computed in the same arithmetic on every device.
//   minmax      running min and max (llm-compressor's default)
//   ema         min and max as exponential moving averages over batches (decay ema_decay)
//   percentile  the range clipped at the given percentile of |x| (symmetric)
//   mse         the clipping threshold that minimises the expected squared quantization
//               error over the observed |x| distribution (as in TensorRT/ModelOpt's "mse")
// percentile and mse keep a 2048-bin histogram of |x| over [0, absmax], which needs the
// global absmax first: their calibration runs the batches twice (pass 0: range, pass 1:
// histogram). They observe per-tensor ranges (one unit) only.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "config/choices.h"
#include "quant/quant_args.h"

namespace qtrain::quant {

struct ObserverOptions {
  config::ObserverKind kind = config::ObserverKind::minmax;
  double ema_decay = 0.9;
  double percentile = 99.99;
};

class Observer {
 public:
  explicit Observer(ObserverOptions options) : options_(std::move(options)) {}
  int passes() const { return options_.kind == config::ObserverKind::percentile || options_.kind == config::ObserverKind::mse ? 2 : 1; }
  void begin_pass(int pass);  // 0, then 1 for the histogram observers
  // `units`: [units, elements], the unit view of the observed tensor (quant_math.h).
  void update(const torch::Tensor& units);
  // Combines every rank's statistics (a collective: all ranks call it in the same order).
  // An observer that no rank fed stays unseen (a mixture's expert that no calibration token
  // was routed to): calibrate_activations decides what it gets.
  void reduce_across_ranks();
  bool seen() const { return seen_; }
  // The largest |lo|, |hi| over the units (after the reduction; 0 when unseen).
  double absmax() const;
  // The calibrated range per unit, lo and hi as [units, 1] fp32 on the host, for `args`
  // (after the last pass and the reduction).
  std::pair<torch::Tensor, torch::Tensor> range(const QuantArgs& args) const;

 private:
  ObserverOptions options_;
  int pass_ = 0;
  bool seen_ = false;
  torch::Tensor min_, max_;  // [units] fp64, on the observed tensor's device until reduced
  double absmax_ = 0;        // one unit: the reduced max |x|, the histogram's range
  std::vector<double> histogram_;  // pass 1: counts of |x| in 2048 bins over [0, absmax_]
};

// The clipping threshold of a histogram of |x| (bin i covers [i, i+1) * absmax / bins)
// that minimises sum_bins count * E[(x - q(x))^2] for a symmetric grid of `levels` steps
// per side; exposed for tests.
double mse_optimal_clip(const std::vector<double>& histogram, double absmax, double half_levels);

}  // namespace qtrain::quant
