// Bit packing with shifts on int64 intermediates (no sign-extension surprises), then int32.
#include "quant/pack_quantized.h"

#include "common/error.h"

namespace qtrain::quant {

torch::Tensor pack_to_int32(const torch::Tensor& values, int num_bits, int64_t dim) {
  QT_REQUIRE(num_bits > 0 && 32 % num_bits == 0, "pack_to_int32 needs a bit width that divides 32");
  const int64_t per_word = 32 / num_bits;
  auto v = values.to(torch::kInt64);
  const bool along_rows = dim == 0 && v.dim() == 2;
  if (along_rows) v = v.t();
  const int64_t length = v.size(-1);
  const int64_t words = (length + per_word - 1) / per_word;
  const int64_t offset = int64_t{1} << (num_bits - 1);
  auto u = v + offset;  // unsigned codes
  TORCH_CHECK(u.numel() == 0 || (u.min().item<int64_t>() >= 0 && u.max().item<int64_t>() < (offset << 1)),
              "values outside the ", num_bits, "-bit range");
  if (words * per_word != length) u = torch::constant_pad_nd(u, {0, words * per_word - length}, 0);
  u = u.reshape({-1, words, per_word});
  auto shifts = torch::arange(per_word, torch::dtype(torch::kInt64).device(u.device())).mul(num_bits);
  auto packed = torch::bitwise_left_shift(u, shifts).sum(-1);  // disjoint bit fields: the sum is the bitwise or
  // Words >= 2^31 wrap to negative int32, as a uint32 reinterpreted.
  packed = torch::where(packed >= (int64_t{1} << 31), packed - (int64_t{1} << 32), packed);
  auto out_shape = v.sizes().vec();
  out_shape.back() = words;
  auto out = packed.reshape(out_shape).to(torch::kInt32);
  return along_rows ? out.t().contiguous() : out;
}

torch::Tensor unpack_from_int32(const torch::Tensor& packed, int num_bits, int64_t length, int64_t dim) {
  const int64_t per_word = 32 / num_bits;
  auto p = packed.to(torch::kInt64);
  const bool along_rows = dim == 0 && p.dim() == 2;
  if (along_rows) p = p.t();
  p = torch::where(p < 0, p + (int64_t{1} << 32), p);
  auto shifts = torch::arange(per_word, torch::dtype(torch::kInt64).device(p.device())).mul(num_bits);
  const int64_t mask = (int64_t{1} << num_bits) - 1;
  auto codes = torch::bitwise_right_shift(p.unsqueeze(-1), shifts).bitwise_and(mask);
  auto shape = p.sizes().vec();
  shape.back() = p.size(-1) * per_word;
  auto values = codes.reshape(shape).narrow(-1, 0, length) - (int64_t{1} << (num_bits - 1));
  auto out = values.to(torch::kInt8);
  return along_rows ? out.t().contiguous() : out;
}

}  // namespace qtrain::quant
