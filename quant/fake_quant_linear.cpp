// QAT forward: the input and the weight through their tensor quantizers.
#include "quant/fake_quant_linear.h"

#include "common/error.h"

namespace qtrain::quant {

namespace {

TensorQuantizerOptions input_options(const FakeQuantOptions& o) { return {o.observer, o.scale_dtype, false}; }

}  // namespace

FakeQuantLinear::FakeQuantLinear(Scheme scheme, FakeQuantOptions options, const torch::Tensor& weight)
    : scheme_(std::move(scheme)),
      options_(options),
      inputs_(TensorQuantizer::for_activation(scheme_.input_activations, input_options(options), {1, 1},
                                              /*store_zero_point=*/true)) {
  inputs_.scale = register_buffer("input_scale", inputs_.scale);
  inputs_.zero_point = register_buffer("input_zero_point", inputs_.zero_point);
  inputs_.flag = register_buffer("frozen", inputs_.flag);
  scale_version = register_buffer("scale_version", torch::zeros({}, torch::kInt64));
  if (!scheme_.weights) return;
  // A skeleton's weight (model::Skeleton) has no values yet: placeholders of the right
  // shapes, until the caller sets initial_weight_qparams of the full weight.
  const auto initial = model::materialised(weight) ? initial_weight_qparams(weight) : placeholder_qparams(weight);
  weights_.emplace(TensorQuantizer::for_weight(*scheme_.weights, {options.observer, options.scale_dtype, options.learnable_scales}, initial));
  weights_->zero_point = register_buffer("weight_zero_point", weights_->zero_point);
  weights_->scale = options_.learnable_scales ? register_parameter("weight_scale", weights_->scale)
                                              : register_buffer("weight_scale", weights_->scale);
  weights_->flag = register_buffer("weight_fixed", weights_->flag);
}

QParams FakeQuantLinear::initial_weight_qparams(const torch::Tensor& weight) const {
  return compute_qparams(weight, *scheme_.weights, options_.scale_dtype);
}

QParams FakeQuantLinear::placeholder_qparams(const torch::Tensor& weight) const {
  const auto units = unit_view(torch::empty(weight.sizes(), weight.options().device(torch::kMeta)), *scheme_.weights).size(0);
  const auto options = weight.options().dtype(torch::kFloat32);
  return {torch::ones({units, 1}, options), torch::zeros({units, 1}, options)};
}

void FakeQuantLinear::refresh_from_buffers() {
  if (weights_) weights_->refresh_from_state();
  inputs_.refresh_from_state();
}

torch::Tensor FakeQuantLinear::forward(model::LinearImpl& linear, const torch::Tensor& x) {
  const bool compact = kept_inputs_.defined();
  const auto kept_x = compact ? x.index_select(-1, kept_inputs_) : x;
  const auto weight = compact ? linear.weight.index_select(1, kept_inputs_) : linear.weight;
  const auto input = inputs_.forward(kept_x);
  return linear.linear(input, weights_ ? weights_->forward(weight, /*for_matmul=*/true) : weight);
}

void FakeQuantLinear::set_kept_inputs(torch::Tensor kept) {
  const bool group_scales = scheme_.weights && scheme_.weights->strategy == Strategy::group;
  if (kept.defined() && group_scales && weights_->is_set())
    throw Error("pruning the input columns of a linear whose group-wise weight scales are fixed (GPTQ) or learned (LSQ)")
        .key("prune")
        .expected("min-max group scales (quant.method rtn or awq, learnable_scales false), or per-channel weights");
  kept_inputs_ = kept.defined() ? kept.to(torch::kInt64) : kept;
}

std::shared_ptr<FakeQuantLinear> FakeQuantLinear::compacted(const torch::Tensor& weight, const torch::Tensor& kept_rows,
                                                            int64_t source_rows) const {
  auto out = std::make_shared<FakeQuantLinear>(scheme_, options_, weight.detach());
  out->to(weight.device());
  out->inputs_.copy_state(inputs_);
  {
    torch::NoGradGuard no_grad;
    out->scale_version.copy_(scale_version);
  }
  if (weights_) {
    QT_REQUIRE(!(weights_->is_set() && kept_inputs_.defined() && scheme_.weights->strategy == Strategy::group),
               "fixed group scales cannot follow pruned input columns");
    // Units are rows (channel) or row-major groups of a row (group): kept rows keep theirs.
    out->weights_->copy_state(*weights_, [&](const torch::Tensor& units) {
      if (!kept_rows.defined() || scheme_.weights->strategy == Strategy::tensor) return units;
      return units.reshape({source_rows, -1}).index_select(0, kept_rows.to(units.device())).reshape({-1, 1});
    });
  }
  return out;
}

void FakeQuantLinear::freeze() {
  if (!inputs_.needs_calibration()) return;
  inputs_.freeze();
  torch::NoGradGuard no_grad;
  scale_version.add_(1);
}

}  // namespace qtrain::quant
