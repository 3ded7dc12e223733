// The tensor quantizer: where a tensor's scale comes from, through the shared arithmetic.
#include "quant/tensor_quantizer.h"

#include "common/error.h"
#include "quant/fp4.h"

namespace qtrain::quant {

TensorQuantizer::TensorQuantizer(std::optional<QuantArgs> args, ScaleSource source, TensorQuantizerOptions options)
    : args_(std::move(args)), source_(source), options_(options), observer_(options.observer) {}

TensorQuantizer TensorQuantizer::for_weight(const QuantArgs& args, const TensorQuantizerOptions& options,
                                            const QParams& initial) {
  TensorQuantizer q(args, ScaleSource::weight, options);
  q.scale = initial.scale;
  q.zero_point = initial.zero_point;
  q.flag = torch::zeros({}, torch::kBool);
  if (args.has_global_scale()) q.global_scale = initial.global_scale.defined() ? initial.global_scale : torch::ones({1});
  if (options.learnable) {
    if (args.has_power_of_two_scales())
      throw Error("MXFP4's E8M0 scales are powers of two and are not learned").key("quant.learnable_scales")
          .expected("false with mxfp4 schemes, or an integer, FP8 or NVFP4 scheme");
    if (args.fp8_group_scales)
      throw Error("w4afp8's group scales are re-encoded by the engine and are not learned").key("quant.learnable_scales")
          .expected("false with w4afp8");
    if (!args.symmetric)
      throw Error("learned (LSQ) scales are for symmetric weights (" + args.describe() + ")").key("quant.learnable_scales")
          .expected("false with asymmetric schemes");
    q.flag.fill_(true);  // a learned scale never follows min-max
    q.set_host_ = true;
  }
  return q;
}

TensorQuantizer TensorQuantizer::for_activation(const std::optional<QuantArgs>& args, const TensorQuantizerOptions& options,
                                                std::vector<int64_t> scale_shape, bool store_zero_point,
                                                torch::Tensor shared_flag) {
  TensorQuantizer q(args, args && args->dynamic ? ScaleSource::dynamic : ScaleSource::observed, options);
  QT_REQUIRE(!options.learnable, "learned scales are for weights");
  q.scale = torch::ones(scale_shape);
  if (store_zero_point) q.zero_point = torch::zeros(scale_shape);
  q.flag = shared_flag.defined() ? shared_flag : torch::zeros({}, torch::kBool);
  if (args && args->has_global_scale()) {
    QT_REQUIRE(args->local, "NVFP4 activations have run-time group scales under a calibrated global scale");
    q.global_scale = torch::ones({1});
  }
  return q;
}

QParams TensorQuantizer::stored_units() const {
  const auto s = scale.reshape({-1, 1});
  return {s, zero_point.defined() ? zero_point.reshape({-1, 1}) : torch::zeros_like(s, s.options().requires_grad(false)),
          global_scale};
}

QParams TensorQuantizer::stored() const {
  auto qp = stored_units();
  return {qp.scale.detach(), qp.zero_point, qp.global_scale};
}

torch::Tensor TensorQuantizer::global_scale_for(const torch::Tensor& weight) const {
  if (!args_ || !args_->has_global_scale()) return {};
  if (set_host_ || source_ != ScaleSource::weight) return global_scale;
  return global_source_ ? global_source_(weight) : global_scale_of(weight);
}

QParams TensorQuantizer::qparams(const torch::Tensor& x) const {
  const auto& args = *args_;
  switch (source_) {
    case ScaleSource::dynamic:  // the engine computes them at run time, in fp32
      return compute_qparams(x, args, torch::kFloat32);
    case ScaleSource::observed:
      TORCH_CHECK(set_host_, "static activation scales are used before calibration");
      // NVFP4: group scales from x at run time, under the calibrated global scale.
      if (args.local) return compute_qparams(x, args, torch::kFloat32, global_scale);
      return stored_units();
    case ScaleSource::weight: break;
  }
  if (!set_host_) return compute_qparams(x, args, options_.scale_dtype, global_scale_for(x));
  const auto qp = stored_units();
  if (!learned()) return with_engine_scales(qp, args, x.size(0));
  // Guard against divergence: a learned scale never falls below 1e-8 (no division blow-up),
  // and is rounded to its storage format exactly as the stored one will be.
  auto clamped = qp.scale.clamp_min(1e-8);
  auto rounded = round_scale(clamped.detach(), args, options_.scale_dtype);
  return {clamped + (rounded - clamped).detach(), qp.zero_point, qp.global_scale};
}

torch::Tensor TensorQuantizer::forward(const torch::Tensor& x, bool for_matmul) {
  if (!enabled()) return x;
  if (observing_) {
    // NVFP4's activations calibrate their per-tensor global scale only.
    observer_.update(args_->local ? x.detach().reshape({1, -1}) : unit_view(x.detach(), *args_));
    return x;  // calibration sees the unquantized tensor
  }
  const auto qp = qparams(x);
  return for_matmul ? fake_quantize_for_matmul(x, qp, *args_) : fake_quantize(x, qp, *args_);
}

void TensorQuantizer::set(const QParams& qp) {
  torch::NoGradGuard no_grad;
  observing_ = false;
  scale.copy_(qp.scale.reshape(scale.sizes()));
  if (zero_point.defined() && qp.zero_point.defined()) zero_point.copy_(qp.zero_point.reshape(zero_point.sizes()));
  if (global_scale.defined() && qp.global_scale.defined()) global_scale.copy_(qp.global_scale.reshape({1}));
  flag.fill_(true);
  set_host_ = true;
}

void TensorQuantizer::refresh_from_state() { set_host_ = flag.item<bool>(); }

void TensorQuantizer::begin_pass(int pass) {
  QT_REQUIRE(needs_calibration(), "only observed scales are calibrated");
  observing_ = true;
  observer_.begin_pass(pass);
}

void TensorQuantizer::end_pass() { observer_.reduce_across_ranks(); }

void TensorQuantizer::adopt_observations(const TensorQuantizer& other) {
  QT_REQUIRE(args_ == other.args_ && other.observer_.seen(), "observations adopted from a different or unseen quantizer");
  observer_ = other.observer_;
}

void TensorQuantizer::freeze() {
  observing_ = false;
  if (!needs_calibration()) return;
  const auto [lo, hi] = observer_.range(*args_);
  if (args_->local) {  // the global scale of the calibrated absmax; group scales stay dynamic
    set({scale.detach(), {}, nvfp4_global_scale(torch::maximum(lo.abs(), hi.abs()).max())});
    return;
  }
  set(qparams_from_minmax(lo, hi, *args_, options_.scale_dtype));
}

void TensorQuantizer::copy_state(const TensorQuantizer& source,
                                 const std::function<torch::Tensor(const torch::Tensor&)>& select) {
  QT_REQUIRE(args_ == source.args_, "quantizer state copied between different quantization args");
  const auto pick = [&](const torch::Tensor& t) { return select ? select(t) : t; };
  torch::NoGradGuard no_grad;
  flag.copy_(source.flag);
  set_host_ = source.set_host_;
  // A weight that follows min-max has no parameters of its own to carry.
  if (source_ == ScaleSource::weight && !source.set_host_) return;
  scale.copy_(pick(source.scale.detach()).reshape(scale.sizes()));
  if (zero_point.defined()) zero_point.copy_(pick(source.zero_point).reshape(zero_point.sizes()));
  if (global_scale.defined()) global_scale.copy_(source.global_scale);
}

}  // namespace qtrain::quant
