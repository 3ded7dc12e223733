// QAT forward: the input and the weight through their tensor quantizers.
#include "quant/fake_quant_linear.h"

#include "common/error.h"
#include "quant/fp4.h"

namespace qtrain::quant {

namespace {

TensorQuantizerOptions input_options(const FakeQuantOptions& o) { return {o.observer, o.scale_dtype, false}; }

// Scales of consecutive columns of a row (groups, blocks): pruning input columns moves them.
bool column_units(const QuantArgs& a) {
  return a.strategy == Strategy::group || a.strategy == Strategy::tensor_group || a.strategy == Strategy::block;
}

}  // namespace

FakeQuantLinear::FakeQuantLinear(Scheme scheme, FakeQuantOptions options, const torch::Tensor& weight)
    : scheme_(std::move(scheme)),
      options_(options),
      inputs_(TensorQuantizer::for_activation(scheme_.input_activations, input_options(options), {1, 1},
                                              /*store_zero_point=*/true)) {
  inputs_.scale = register_buffer("input_scale", inputs_.scale);
  inputs_.zero_point = register_buffer("input_zero_point", inputs_.zero_point);
  inputs_.flag = register_buffer("frozen", inputs_.flag);
  if (inputs_.global_scale.defined()) inputs_.global_scale = register_buffer("input_global_scale", inputs_.global_scale);
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
  if (weights_->global_scale.defined())
    weights_->global_scale = register_buffer("weight_global_scale", weights_->global_scale);
}

namespace {

// NVFP4's global scale of a fused group: that of the largest absmax of its weights.
torch::Tensor group_global_scale(const torch::Tensor& weight, const std::vector<model::LinearImpl*>& siblings) {
  auto absmax = weight.detach().abs().max().to(torch::kFloat32);
  for (auto* linear : siblings) absmax = torch::maximum(absmax, linear->weight.detach().abs().max().to(torch::kFloat32));
  return nvfp4_global_scale(absmax);
}

}  // namespace

void FakeQuantLinear::share_global_scale(model::LinearImpl& self, const std::vector<model::LinearImpl*>& siblings,
                                         bool restart_learned) {
  if (!weights_ || !weights_->args().has_global_scale()) return;
  weights_->set_global_scale_source([siblings](const torch::Tensor& weight) { return group_global_scale(weight, siblings); });
  // A learned scale was initialised under the layer's own global scale (the weight quantizer
  // was fixed from the start): again, under the group's. A ZeRO-3 skeleton has no values
  // yet; its start-up (trainer/session.cpp) sets each layer's own.
  if (restart_learned && weights_->learned() && model::materialised(self.weight))
    weights_->set(compute_qparams(self.weight.detach(), *scheme_.weights, options_.scale_dtype,
                                  group_global_scale(self.weight, siblings)));
}

QParams FakeQuantLinear::initial_weight_qparams(const torch::Tensor& weight) const {
  return compute_qparams(weight, *scheme_.weights, options_.scale_dtype);
}

QParams FakeQuantLinear::placeholder_qparams(const torch::Tensor& weight) const {
  const auto units = unit_view(torch::empty(weight.sizes(), weight.options().device(torch::kMeta)), *scheme_.weights).size(0);
  const auto options = weight.options().dtype(torch::kFloat32);
  QParams qp{torch::ones({units, 1}, options), torch::zeros({units, 1}, options)};
  if (scheme_.weights->has_global_scale()) qp.global_scale = torch::ones({1}, options);
  return qp;
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
  const bool group_scales = scheme_.weights && column_units(*scheme_.weights);
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
    const auto& args = *scheme_.weights;
    QT_REQUIRE(!(weights_->is_set() && kept_inputs_.defined() && column_units(args)),
               "fixed group scales cannot follow pruned input columns");
    if (weights_->is_set() && kept_rows.defined() && args.strategy == Strategy::block)
      throw Error("pruning the rows of a linear whose block-wise weight scales are fixed (GPTQ) or learned (LSQ)")
          .key("prune")
          .expected("min-max block scales (quant.method rtn, learnable_scales false)");
    // Units are rows (channel) or row-major groups of a row (group): kept rows keep theirs.
    out->weights_->copy_state(*weights_, [&](const torch::Tensor& units) {
      if (!kept_rows.defined() || args.strategy == Strategy::tensor) return units;
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
