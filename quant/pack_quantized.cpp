// Dense bit packing with shifts on int64 intermediates (no sign-extension surprises), then
// int32. Every group of 32 values fills exactly `num_bits` words, so the positions of the bit
// fields repeat with a period of 32 values: one table of 32 (word, shift) pairs serves all.
#include "quant/pack_quantized.h"

#include "common/error.h"

namespace qtrain::quant {

namespace {

constexpr int64_t kGroup = 32;  // values per group of `num_bits` words
constexpr int64_t kWordMask = (int64_t{1} << 32) - 1;

// For value i of a group: the word its low bits go to, their shift, and whether its high
// bits spill into the next word (and then by how much they are shifted right).
struct BitTable {
  torch::Tensor word, shift, spills, spill_word, spill_shift;
};
BitTable bit_table(int num_bits, torch::Device device) {
  const auto opts = torch::dtype(torch::kInt64).device(device);
  const auto bit = torch::arange(kGroup, opts).mul(num_bits);
  BitTable t;
  t.word = bit.div(32, "floor");
  t.shift = bit.remainder(32);
  const auto spill = t.shift.add(num_bits - 32);
  t.spills = spill.gt(0).nonzero().reshape({-1});
  t.spill_word = t.word.index_select(0, t.spills).add(1);
  t.spill_shift = spill.index_select(0, t.spills).neg().add(num_bits);  // num_bits - spilled bits
  return t;
}

}  // namespace

torch::Tensor pack_to_int32(const torch::Tensor& values, int num_bits, int64_t dim) {
  QT_REQUIRE(num_bits >= 1 && num_bits <= 8, "pack_to_int32 packs 1 to 8 bits");
  auto v = values.to(torch::kInt64);
  const bool along_rows = dim == 0 && v.dim() == 2;
  if (along_rows) v = v.t();
  const int64_t length = v.size(-1);
  const int64_t words = packed_words(length, num_bits);
  const int64_t groups = (length + kGroup - 1) / kGroup;
  const int64_t offset = int64_t{1} << (num_bits - 1);
  auto u = v + offset;  // unsigned codes
  TORCH_CHECK(u.numel() == 0 || (u.min().item<int64_t>() >= 0 && u.max().item<int64_t>() < (offset << 1)),
              "values outside the ", num_bits, "-bit range");
  if (groups * kGroup != length) u = torch::constant_pad_nd(u, {0, groups * kGroup - length}, 0);
  u = u.reshape({-1, kGroup});
  const auto t = bit_table(num_bits, u.device());
  auto packed = torch::zeros({u.size(0), num_bits}, u.options());
  // Disjoint bit fields: the sums are bitwise ors.
  packed.index_add_(1, t.word, torch::bitwise_left_shift(u, t.shift).bitwise_and(kWordMask));
  if (t.spills.numel() > 0)
    packed.index_add_(1, t.spill_word, torch::bitwise_right_shift(u.index_select(1, t.spills), t.spill_shift));
  // Words >= 2^31 wrap to negative int32, as a uint32 reinterpreted.
  packed = torch::where(packed >= (int64_t{1} << 31), packed - (int64_t{1} << 32), packed);
  auto out_shape = v.sizes().vec();
  out_shape.back() = groups * num_bits;
  auto out = packed.reshape(out_shape).narrow(-1, 0, words).to(torch::kInt32);
  return along_rows ? out.t().contiguous() : out.contiguous();
}

torch::Tensor unpack_from_int32(const torch::Tensor& packed, int num_bits, int64_t length, int64_t dim) {
  QT_REQUIRE(num_bits >= 1 && num_bits <= 8, "unpack_from_int32 unpacks 1 to 8 bits");
  auto p = packed.to(torch::kInt64);
  const bool along_rows = dim == 0 && p.dim() == 2;
  if (along_rows) p = p.t();
  const int64_t words = packed_words(length, num_bits);
  TORCH_CHECK(p.size(-1) >= words, "unpack_from_int32: ", length, " values of ", num_bits, " bits need ", words,
              " words, not ", p.size(-1));
  const int64_t groups = (length + kGroup - 1) / kGroup;
  p = torch::where(p < 0, p + (int64_t{1} << 32), p).narrow(-1, 0, words);
  if (groups * num_bits != words) p = torch::constant_pad_nd(p, {0, groups * num_bits - words}, 0);
  const auto lead = p.sizes().vec();
  p = p.reshape({-1, num_bits});
  const auto t = bit_table(num_bits, p.device());
  auto codes = torch::bitwise_right_shift(p.index_select(1, t.word), t.shift);
  if (t.spills.numel() > 0) {
    const auto high = torch::bitwise_left_shift(p.index_select(1, t.spill_word), t.spill_shift);
    codes.index_add_(1, t.spills, high.bitwise_and(kWordMask));  // the low bits of `codes` there are 0 above
  }
  codes = codes.bitwise_and((int64_t{1} << num_bits) - 1);
  auto shape = lead;
  shape.back() = groups * kGroup;
  auto values = codes.reshape(shape).narrow(-1, 0, length) - (int64_t{1} << (num_bits - 1));
  auto out = values.to(torch::kInt8);
  return along_rows ? out.t().contiguous() : out.contiguous();
}

}  // namespace qtrain::quant
