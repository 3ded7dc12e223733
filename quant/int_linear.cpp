// Integer forward of exported linears.
#include "quant/int_linear.h"

#include "common/compat.h"
#include "quant/compressed_tensors.h"
#include "quant/fp8.h"
#include "quant/quant_math.h"

namespace qtrain::quant {

IntLinear::IntLinear(IntLinearTensors tensors) : t_(std::move(tensors)) {
  // Registered, so that to(device) moves them with the model.
  t_.weight_q = register_buffer("weight_q", t_.weight_q);
  t_.weight_scale = register_buffer("weight_scale", t_.weight_scale.to(torch::kFloat32));
  if (t_.weight_zero_point.defined())
    t_.weight_zero_point = register_buffer("weight_zero_point", t_.weight_zero_point.to(torch::kFloat32));
  if (t_.input_scale.defined()) t_.input_scale = register_buffer("input_scale", t_.input_scale.to(torch::kFloat32));
  if (t_.input_zero_point.defined())
    t_.input_zero_point = register_buffer("input_zero_point", t_.input_zero_point.to(torch::kFloat32));
  if (t_.weight_global_scale.defined()) t_.weight_global_scale = register_buffer("weight_global_scale", t_.weight_global_scale);
  if (t_.input_global_scale.defined()) t_.input_global_scale = register_buffer("input_global_scale", t_.input_global_scale);
}

torch::Tensor IntLinear::dequantized_weight() const {
  const auto out = t_.weight_q.size(0), in = t_.weight_q.size(1);
  const auto& args = t_.weights;
  // The multiplier of each scale unit, as the fake quant and the engine compute it.
  auto scale = t_.weight_scale;
  if (args.fp8_group_scales) scale = w4a8_fp8_engine_scales(scale);
  if (t_.weight_global_scale.defined()) scale = scale / t_.weight_global_scale;
  auto q = t_.weight_q.to(torch::kFloat32);
  if (args.strategy == Strategy::block) {  // one scale per block: spread over it, padding cut
    const auto spread = scale.repeat_interleave(args.block_rows, 0).repeat_interleave(args.block_cols, 1);
    return q * spread.narrow(0, 0, out).narrow(1, 0, in);
  }
  const auto groups = scale.size(1);
  q = q.reshape({out, groups, in / groups});
  auto zp = t_.weight_zero_point.defined() ? t_.weight_zero_point.unsqueeze(-1) : torch::zeros({}, q.options());
  return ((q - zp) * scale.unsqueeze(-1)).reshape({out, in});
}

bool IntLinear::factorized_product() const {
  // Per-tensor or per-token input scales and per-channel weight scales factor out of the sums.
  const auto& in = *t_.input_activations;
  return (t_.format == ct::kIntQuantized || t_.format == ct::kFloatQuantized) && !in.local &&
         (in.strategy == Strategy::tensor || in.strategy == Strategy::token) &&
         (t_.weights.strategy == Strategy::channel || t_.weights.strategy == Strategy::tensor);
}

torch::Tensor IntLinear::dequantized_input(const torch::Tensor& x) const {
  const auto& in = *t_.input_activations;
  const auto x32 = x.to(torch::kFloat32);
  const auto qp = in.dynamic ? compute_qparams(x32, in, torch::kFloat32)
                             : in.local ? compute_qparams(x32, in, torch::kFloat32, t_.input_global_scale)
                                        : QParams{t_.input_scale.reshape({1, 1}), torch::zeros({1, 1}, x32.options())};
  return from_unit_view(dequantize(quantize(unit_view(x32, in), qp, in), qp), x.sizes(), in);
}

torch::Tensor IntLinear::int8_product(const torch::Tensor& x2d) {
  const auto& in_args = *t_.input_activations;
  QParams in_qp;
  if (in_args.dynamic) in_qp = compute_qparams(x2d, in_args, torch::kFloat32);
  else in_qp = {t_.input_scale.reshape({1, 1}),
                t_.input_zero_point.defined() ? t_.input_zero_point.reshape({1, 1}) : torch::zeros({1, 1}, x2d.options().dtype(torch::kFloat32))};
  auto xq = quantize(x2d, in_qp, in_args);  // [tokens, in], integral values
  auto acc = compat::int8_matmul(xq, t_.weight_q.t()).to(torch::kFloat32);  // exact int32 sums
  if (t_.input_zero_point.defined()) {
    // (xq - zx) . wq = xq . wq - zx * sum(wq): the engine's azp correction.
    acc = acc - in_qp.zero_point * t_.weight_q.to(torch::kFloat32).sum(1).unsqueeze(0);
  }
  // Per-channel weight scales [out, 1] -> [1, out]; the input scale per tensor or token.
  return acc * in_qp.scale * t_.weight_scale.reshape({1, -1});
}

torch::Tensor IntLinear::forward(model::LinearImpl& linear, const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  if (!t_.input_activations) return linear.linear(x, dequantized_weight().to(x.scalar_type()));
  if (!factorized_product())  // group-wise inputs: both operands dequantized, as the simulation computes them
    return linear.linear(dequantized_input(x).to(x.scalar_type()), dequantized_weight().to(x.scalar_type()));
  const auto shape = x.sizes().vec();
  auto x2d = x.reshape({-1, shape.back()}).to(torch::kFloat32);
  torch::Tensor y;
  if (t_.format == ct::kIntQuantized) {
    y = int8_product(x2d);
  } else {  // FP8: E4M3 grid values times scales, product in fp32
    const auto& in_args = *t_.input_activations;
    QParams in_qp = in_args.dynamic ? compute_qparams(x2d, in_args, torch::kFloat32)
                                    : QParams{t_.input_scale.reshape({1, 1}), torch::zeros({1, 1}, x2d.options())};
    auto xq = quantize(x2d, in_qp, in_args);
    y = torch::matmul(xq, t_.weight_q.t()) * in_qp.scale * t_.weight_scale.reshape({1, -1});
  }
  if (linear.bias.defined()) y = y + linear.bias.to(torch::kFloat32);
  auto out_shape = shape;
  out_shape.back() = y.size(-1);
  return y.reshape(out_shape).to(x.scalar_type());
}

}  // namespace qtrain::quant
