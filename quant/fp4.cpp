// E2M1 rounding and codes, the FP4 packing, and the NVFP4 / MXFP4 scales.
#include "quant/fp4.h"

#include <limits>

#include "common/error.h"
#include "quant/quant_math.h"

namespace qtrain::quant {

torch::Tensor round_to_fp4_e2m1(const torch::Tensor& x) {
  const auto v = x.to(torch::kFloat32).clamp(-kFp4E2M1Max, kFp4E2M1Max);
  const auto a = v.abs();
  // The grid's step is 0.5 below 2, 1 below 4 and 2 up to 6; within each range the code is
  // (|x| / step) plus a constant of the range's parity, so rounding the quotient half to
  // even (torch::round) rounds ties to the even code. The divisions are exact.
  const auto step = torch::where(a < 2, torch::full_like(a, 0.5), torch::where(a < 4, torch::ones_like(a), torch::full_like(a, 2.0)));
  return torch::round(a / step) * step * torch::where(v < 0, -1.0, 1.0).to(torch::kFloat32);
}

torch::Tensor encode_fp4_e2m1(const torch::Tensor& grid_values) {
  const auto v = grid_values.to(torch::kFloat32);
  const auto a = v.abs();
  // Magnitude index: 2|x| below 2 (0, 0.5, 1, 1.5 -> 0..3), |x| + 2 below 4 (2, 3 -> 4, 5),
  // |x| / 2 + 4 above (4, 6 -> 6, 7).
  const auto index = torch::where(a < 2, a * 2, torch::where(a < 4, a + 2, a / 2 + 4)).to(torch::kInt64);
  const auto sign = torch::signbit(v).to(torch::kInt64);
  return (index + sign * 8).to(torch::kUInt8);
}

torch::Tensor decode_fp4_e2m1(const torch::Tensor& codes) {
  static const auto magnitudes = torch::tensor({0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f});
  const auto c = codes.to(torch::kInt64);
  const auto value = magnitudes.to(codes.device()).index({torch::bitwise_and(c, 7)});
  return torch::where(torch::bitwise_and(c, 8) != 0, -value, value);
}

torch::Tensor pack_fp4(const torch::Tensor& codes) {
  QT_REQUIRE(codes.dim() == 2 && codes.size(1) % 2 == 0, "FP4 packing needs a matrix with an even number of columns");
  const auto c = codes.to(torch::kInt64).reshape({codes.size(0), -1, 2});
  const auto low = c.select(2, 0), high = c.select(2, 1);
  return torch::bitwise_or(low, torch::bitwise_left_shift(high, 4)).to(torch::kUInt8);
}

torch::Tensor unpack_fp4(const torch::Tensor& packed) {
  const auto p = packed.to(torch::kInt64);
  const auto low = torch::bitwise_and(p, 15), high = torch::bitwise_right_shift(p, 4);
  return torch::stack({low, high}, 2).reshape({packed.size(0), -1}).to(torch::kUInt8);
}

torch::Tensor nvfp4_global_scale(const torch::Tensor& tensor_absmax) {
  // As compressed-tensors evaluates `448 * 6 / absmax`: a Python number over a tensor is the
  // tensor's reciprocal times the number (Tensor.__rtruediv__), which differs from a division
  // in the last bit for about a quarter of the values.
  // A tensor of zeros (or of values below 2688 / FLT_MAX) would overflow to inf, and inf * 0
  // is NaN in every group scale: the largest finite float instead, which quantizes it to zeros.
  const auto global = tensor_absmax.to(torch::kFloat32).reciprocal() * (kFp8E4M3Max * kFp4E2M1Max);
  return global.clamp_max(std::numeric_limits<float>::max()).reshape({1});
}

torch::Tensor nvfp4_group_scales(const torch::Tensor& group_absmax, const torch::Tensor& global_scale) {
  const auto scaled = global_scale.to(torch::kFloat32) * (group_absmax.to(torch::kFloat32) / kFp4E2M1Max);
  const auto grid = round_to_fp8_e4m3(scaled.clamp(-kFp8E4M3Max, kFp8E4M3Max));
  return torch::where(grid == 0, torch::full_like(grid, 0.125), grid);
}

torch::Tensor mxfp4_scale_exponents(const torch::Tensor& group_absmax) {
  // bf16 bits + (1 << (7 - 1 - 1)), masked to sign and exponent: a mantissa of 1.75 or more
  // rounds up to the next power of two.
  const auto bits = group_absmax.to(torch::kBFloat16).view(torch::kInt16).to(torch::kInt32);
  const auto power_bits = torch::bitwise_and(bits + (1 << 5), 0xFF80);
  const auto exponent_field = torch::bitwise_right_shift(power_bits, 7);  // bf16's biased exponent
  const auto e = (exponent_field - 2).clamp(0, 255);
  return torch::where(group_absmax == 0, torch::zeros_like(e), e).to(torch::kUInt8);
}

torch::Tensor mxfp4_scales(const torch::Tensor& exponents) {
  return torch::pow(2.0, exponents.to(torch::kFloat64) - 127).to(torch::kFloat32);
}

}  // namespace qtrain::quant
