// QAT forward: fake-quantized input and weight through the shared arithmetic.
#include "quant/fake_quant_linear.h"

#include "common/error.h"

namespace qtrain::quant {

FakeQuantLinear::FakeQuantLinear(Scheme scheme, FakeQuantOptions options, const torch::Tensor& weight)
    : scheme_(std::move(scheme)), options_(options), observer_(options.observer) {
  input_scale = register_buffer("input_scale", torch::ones({1, 1}));
  input_zero_point = register_buffer("input_zero_point", torch::zeros({1, 1}));
  frozen_ = register_buffer("frozen", torch::zeros({}, torch::kBool));
  scale_version = register_buffer("scale_version", torch::zeros({}, torch::kInt64));
  if (!scheme_.weights) return;
  // A skeleton's weight (model::Skeleton) has no values yet: placeholders of the right
  // shapes, until the caller sets initial_weight_qparams of the full weight.
  const auto initial = model::materialised(weight) ? initial_weight_qparams(weight) : placeholder_qparams(weight);
  weight_zero_point = register_buffer("weight_zero_point", initial.zero_point);
  if (options_.learnable_scales) {
    QT_REQUIRE(scheme_.weights->symmetric && !scheme_.weights->is_float(),
               "learnable (LSQ) scales are implemented for symmetric integer weights");
    weight_scale = register_parameter("weight_scale", initial.scale);
    weight_fixed = register_buffer("weight_fixed", torch::ones({}, torch::kBool));
    fixed_host_ = true;
  } else {
    weight_scale = register_buffer("weight_scale", initial.scale);
    weight_fixed = register_buffer("weight_fixed", torch::zeros({}, torch::kBool));
  }
}

QParams FakeQuantLinear::initial_weight_qparams(const torch::Tensor& weight) const {
  return compute_qparams(weight, *scheme_.weights, options_.scale_dtype);
}

QParams FakeQuantLinear::placeholder_qparams(const torch::Tensor& weight) const {
  const auto units = unit_view(torch::empty(weight.sizes(), weight.options().device(torch::kMeta)), *scheme_.weights).size(0);
  const auto options = weight.options().dtype(torch::kFloat32);
  return {torch::ones({units, 1}, options), torch::zeros({units, 1}, options)};
}

void FakeQuantLinear::set_weight_qparams(const QParams& qp) {
  torch::NoGradGuard no_grad;
  weight_scale.copy_(qp.scale);
  weight_zero_point.copy_(qp.zero_point);
  weight_fixed.fill_(true);
  fixed_host_ = true;
}

void FakeQuantLinear::refresh_from_buffers() {
  fixed_host_ = weight_fixed.defined() && weight_fixed.item<bool>();
  frozen_host_ = frozen_.item<bool>();
}

void FakeQuantLinear::set_input_qparams(const QParams& qp) {
  torch::NoGradGuard no_grad;
  observing_ = false;
  input_scale.copy_(qp.scale);
  input_zero_point.copy_(qp.zero_point);
  frozen_.fill_(true);
  frozen_host_ = true;
  scale_version.add_(1);
}

QParams FakeQuantLinear::weight_qparams(const torch::Tensor& weight) const {
  if (!fixed_host_) return compute_qparams(weight, *scheme_.weights, options_.scale_dtype);
  if (!weight_scale.requires_grad()) return {weight_scale, weight_zero_point};
  {
    // Guard against divergence: a learned scale never falls below 1e-8 (no division blow-up),
    // and is rounded to the storage dtype exactly as the stored one will be.
    auto scale = weight_scale.clamp_min(1e-8);
    auto stored = scale.detach().to(options_.scale_dtype).to(torch::kFloat32);
    return {scale + (stored - scale).detach(), weight_zero_point};
  }
}

QParams FakeQuantLinear::input_qparams() const { return {input_scale, input_zero_point}; }

torch::Tensor FakeQuantLinear::quantize_input(const torch::Tensor& x) {
  const auto& args = *scheme_.input_activations;
  // Dynamic scales are computed at run time by the engine, in fp32, and never stored.
  if (args.dynamic) return fake_quantize(x, compute_qparams(x, args, torch::kFloat32), args);
  if (observing_) {
    observer_.update(x);
    return x;  // calibration sees the unquantized activations
  }
  TORCH_CHECK(frozen(), "static activation scales are used before calibration");
  return fake_quantize(x, {input_scale, input_zero_point}, args);
}

torch::Tensor FakeQuantLinear::forward(model::LinearImpl& linear, const torch::Tensor& x) {
  if (input_hook_) input_hook_(x);
  const bool compact = kept_inputs_.defined();
  const auto kept_x = compact ? x.index_select(-1, kept_inputs_) : x;
  const auto weight = compact ? linear.weight.index_select(1, kept_inputs_) : linear.weight;
  auto input = scheme_.input_activations && !bypass_activations_ ? quantize_input(kept_x) : kept_x;
  if (!scheme_.weights) return linear.linear(input, weight);
  const auto& args = *scheme_.weights;
  return linear.linear(input, fake_quantize_for_matmul(weight, weight_qparams(weight), args));
}

void FakeQuantLinear::set_kept_inputs(torch::Tensor kept) {
  const bool group_scales = scheme_.weights && scheme_.weights->strategy == Strategy::group;
  if (kept.defined() && group_scales && fixed_host_)
    throw Error("pruning the input columns of a linear whose group-wise weight scales are fixed (GPTQ) or learned (LSQ)")
        .key("prune")
        .expected("min-max group scales (quant.method rtn or awq, learnable_scales false), or per-channel weights");
  kept_inputs_ = kept.defined() ? kept.to(torch::kInt64) : kept;
}

std::shared_ptr<FakeQuantLinear> FakeQuantLinear::compacted(const torch::Tensor& weight, const torch::Tensor& kept_rows,
                                                            int64_t source_rows) const {
  auto out = std::make_shared<FakeQuantLinear>(scheme_, options_, weight.detach());
  out->to(weight.device());
  torch::NoGradGuard no_grad;
  out->input_scale.copy_(input_scale);
  out->input_zero_point.copy_(input_zero_point);
  out->frozen_.copy_(frozen_);
  out->scale_version.copy_(scale_version);
  if (scheme_.weights) {
    QT_REQUIRE(!(fixed_host_ && kept_inputs_.defined() && scheme_.weights->strategy == Strategy::group),
               "fixed group scales cannot follow pruned input columns");
    // Units are rows (channel) or row-major groups of a row (group): kept rows keep theirs.
    auto rows_of = [&](const torch::Tensor& units) {
      if (!kept_rows.defined() || scheme_.weights->strategy == Strategy::tensor) return units;
      return units.reshape({source_rows, -1}).index_select(0, kept_rows.to(units.device())).reshape({-1, 1});
    };
    out->weight_fixed.copy_(weight_fixed);
    if (fixed_host_) {
      out->weight_scale.copy_(rows_of(weight_scale.detach()));
      out->weight_zero_point.copy_(rows_of(weight_zero_point));
    }
  }
  out->refresh_from_buffers();
  return out;
}

void FakeQuantLinear::begin_pass(int pass) {
  observing_ = true;
  observer_.begin_pass(pass);
}

void FakeQuantLinear::end_pass() { observer_.reduce_across_ranks(); }

void FakeQuantLinear::freeze() {
  observing_ = false;
  if (!needs_calibration()) return;
  const auto& args = *scheme_.input_activations;
  const auto [lo, hi] = observer_.range(args);
  auto qp = qparams_from_minmax(torch::full({1, 1}, lo), torch::full({1, 1}, hi), args, options_.scale_dtype);
  torch::NoGradGuard no_grad;
  input_scale.copy_(qp.scale);
  input_zero_point.copy_(qp.zero_point);
  frozen_.fill_(true);
  frozen_host_ = true;
  scale_version.add_(1);
}

}  // namespace qtrain::quant
