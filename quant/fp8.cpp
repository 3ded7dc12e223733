// Bit-level E4M3 codec on int64 intermediates.
#include "quant/fp8.h"

#include <cmath>

#include "quant/quant_math.h"

namespace qtrain::quant {

torch::Tensor encode_fp8_e4m3(const torch::Tensor& grid_values) {
  auto v = grid_values.to(torch::kFloat64);
  auto sign = (v < 0).to(torch::kInt64);
  auto a = v.abs();
  const double min_normal = std::ldexp(1.0, -6);
  auto normal = a >= min_normal;
  auto exponent = torch::floor(torch::log2(a.clamp_min(min_normal)));
  auto mantissa_normal = torch::round((a / torch::pow(2.0, exponent) - 1.0) * 8.0);
  auto mantissa_sub = torch::round(a / std::ldexp(1.0, -9));
  auto exponent_field = torch::where(normal, exponent + 7, torch::zeros_like(exponent)).to(torch::kInt64);
  auto mantissa = torch::where(normal, mantissa_normal, mantissa_sub).to(torch::kInt64);
  auto code = sign * 128 + exponent_field * 8 + mantissa;
  return code.to(torch::kUInt8);
}

torch::Tensor decode_fp8_e4m3(const torch::Tensor& codes) {
  auto c = codes.to(torch::kInt64);
  auto sign = torch::where(torch::bitwise_and(c, 128) != 0, -1.0, 1.0);
  auto exponent_field = torch::bitwise_and(torch::bitwise_right_shift(c, 3), 15).to(torch::kFloat64);
  auto mantissa = torch::bitwise_and(c, 7).to(torch::kFloat64);
  auto normal = (1.0 + mantissa / 8.0) * torch::pow(2.0, exponent_field - 7);
  auto subnormal = mantissa * std::ldexp(1.0, -9);
  return (sign * torch::where(exponent_field > 0, normal, subnormal)).to(torch::kFloat32);
}

torch::Tensor w4a8_fp8_engine_scales(const torch::Tensor& group_scales) {
  const auto s = group_scales.to(torch::kFloat32);
  // QuantFP8 per token (input_quant_fp8.py forward_native): the row's absmax over 448,
  // clamped below, applied as a multiplication by its reciprocal, saturated, cast to E4M3.
  const auto row_scale = (std::get<0>(s.abs().max(/*dim=*/-1, /*keepdim=*/true)) / kFp8E4M3Max)
                             .clamp_min(1.0 / (kFp8E4M3Max * 512.0));
  const auto first = round_to_fp8_e4m3((s * row_scale.reciprocal()).clamp(-kFp8E4M3Max, kFp8E4M3Max));
  const auto group = round_to_fp8_e4m3(first / 8.0);  // headroom: int4 x scale stays inside FP8
  return group * (row_scale * 8.0);
}

}  // namespace qtrain::quant
