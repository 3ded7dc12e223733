// The quantization arithmetic against closed forms, compressed-tensors' published
// conventions (absmax / 7.5 for int4, rne, clamp first), LibTorch's own
// fake_quantize_per_channel_affine as an independent implementation for int8, and the
// pack-quantized bit layout against the example in docs/formats.md.
#include <gtest/gtest.h>

#include "common/error.h"
#include "model/safetensors.h"
#include "quant/fp8.h"
#include "quant/pack_quantized.h"
#include "quant/quant_math.h"
#include "tests/test_util.h"

namespace qtrain::quant {
namespace {

TEST(QuantMath, SymmetricInt4GroupScalesAreAbsmaxOver7Point5) {
  auto w = torch::tensor({{-3.0f, 1.0f, 0.5f, 2.0f}, {0.25f, 0.5f, -0.75f, 1.5f}});
  auto args = preset_scheme("w4a16-g2").weights.value();
  auto qp = compute_qparams(w, args, torch::kFloat32);
  ASSERT_EQ(qp.scale.sizes(), (std::vector<int64_t>{4, 1}));
  EXPECT_FLOAT_EQ(qp.scale[0].item<float>(), 3.0f / 7.5f);
  EXPECT_FLOAT_EQ(qp.scale[1].item<float>(), 2.0f / 7.5f);
  EXPECT_FLOAT_EQ(qp.scale[3].item<float>(), 1.5f / 7.5f);
  auto q = quantize(unit_view(w, args), qp, args);
  // -3 / 0.4 = -7.5 -> -8 (half to even); 1 / 0.4 = 2.5 -> 2; +absmax -> 7.5 -> clamped to 7.
  EXPECT_EQ(q[0][0].item<float>(), -8.0f);
  EXPECT_EQ(q[0][1].item<float>(), 2.0f);
  EXPECT_EQ(q[1][1].item<float>(), 7.0f);
  EXPECT_EQ(q[3][1].item<float>(), 7.0f);
}

TEST(QuantMath, ScalesAreRoundedThroughTheStorageDtype) {
  auto w = torch::randn({8, 32});
  auto args = preset_scheme("w8a16").weights.value();
  auto qp = compute_qparams(w, args, torch::kBFloat16);
  EXPECT_TRUE(qp.scale.equal(qp.scale.to(torch::kBFloat16).to(torch::kFloat32)));
}

TEST(QuantMath, Int8PerChannelMatchesLibTorchFakeQuantize) {
  torch::manual_seed(1);
  auto w = torch::randn({16, 64});
  QuantArgs args;  // int8 symmetric
  args.strategy = Strategy::channel;
  auto qp = compute_qparams(w, args, torch::kFloat32);
  auto ours = fake_quantize(w, qp, args);
  auto reference = torch::fake_quantize_per_channel_affine(w, qp.scale.flatten(), qp.zero_point.flatten().to(torch::kInt32),
                                                           /*axis=*/0, -128, 127);
  // LibTorch multiplies by 1/scale where compressed-tensors (and we) divide: the two may
  // round a value that sits exactly half-way between grid points apart (the +-absmax
  // elements land on +-127.5 by construction). Everywhere else they agree.
  auto v = (w / qp.scale).abs();
  auto not_a_tie = ((v - v.floor()) - 0.5).abs() > 1e-4;
  EXPECT_TRUE(ours.masked_select(not_a_tie).allclose(reference.masked_select(not_a_tie), 0, 1e-6));
  EXPECT_GT(not_a_tie.sum().item<int64_t>(), 16 * 64 - 32);
}

TEST(QuantMath, AsymmetricZeroPointsAndDequantize) {
  auto x = torch::tensor({{0.0f, 1.0f, 2.0f, 3.0f}});  // min 0 -> zero point at qmin
  QuantArgs args;
  args.num_bits = 4;
  args.symmetric = false;
  args.strategy = Strategy::channel;
  auto qp = compute_qparams(x, args, torch::kFloat32);
  EXPECT_FLOAT_EQ(qp.scale.item<float>(), 3.0f / 15.0f);
  EXPECT_FLOAT_EQ(qp.zero_point.item<float>(), -8.0f);
  auto q = quantize(unit_view(x, args), qp, args);
  EXPECT_TRUE(q.equal(torch::tensor({{-8.0f, -3.0f, 2.0f, 7.0f}})));
  EXPECT_TRUE(torch::allclose(dequantize(q, qp), x, 0, 1e-6));
}

TEST(QuantMath, StraightThroughGradientStopsOutsideTheClippingRange) {
  auto x = torch::tensor({{-2.0f, -0.5f, 0.2f, 0.9f}}, torch::requires_grad());
  QuantArgs args;
  args.strategy = Strategy::tensor;
  QParams qp{torch::full({1, 1}, 1.0f / 127.0f), torch::zeros({1, 1})};  // range +-1.008
  fake_quantize(x, qp, args).sum().backward();
  EXPECT_TRUE(x.grad().equal(torch::tensor({{0.0f, 1.0f, 1.0f, 1.0f}})));
}

TEST(QuantMath, LsqScaleGradientMatchesTheClosedForm) {
  auto x = torch::tensor({{0.31f, -0.12f, 5.0f}});
  auto scale = torch::full({1, 1}, 0.1f, torch::requires_grad());
  QuantArgs args;
  args.num_bits = 4;
  args.strategy = Strategy::tensor;
  fake_quantize(x, {scale, torch::zeros({1, 1})}, args).sum().backward();
  // d/ds: (round(v) - v) inside, qmax outside; v = x / s = 3.1, -1.2, 50 -> 3-3.1, -1+1.2, 7
  const double expected = ((3 - 3.1) + (-1 + 1.2) + 7) / std::sqrt(3.0 * 7);
  EXPECT_NEAR(scale.grad().item<double>(), expected, 1e-5);
}

TEST(QuantMath, Fp8GridRoundsToNearestEven) {
  auto x = torch::tensor({448.0f, 1.0f, 1.0625f, 1.1875f, 0.013671875f, 0.0009765625f, -3.3f});
  auto r = round_to_fp8_e4m3(x);
  // 1.0625 is half-way between 1 and 1.125 -> 1 (even); 1.1875 -> 1.25; 0.013671875 =
  // 7 * 2^-9 is a subnormal and exact; 2^-10 is half a subnormal step -> 0; -3.3 -> -3.25.
  auto expected = torch::tensor({448.0f, 1.0f, 1.0f, 1.25f, 0.013671875f, 0.0f, -3.25f});
  EXPECT_TRUE(r.equal(expected)) << r;
}

TEST(QuantMath, GroupSizeMustDivideTheColumns) {
  auto args = preset_scheme("w4a16-g128").weights.value();
  EXPECT_THROW(unit_view(torch::zeros({4, 96}), args), Error);
}

TEST(PackQuantized, LayoutMatchesCompressedTensors) {
  // q = -8 .. -1 -> codes 0 .. 7 -> word 0x76543210 (element 0 in the low nibble).
  auto q = torch::arange(-8, 0, torch::kInt64).reshape({1, 8});
  auto packed = pack_to_int32(q, 4);
  ASSERT_EQ(packed.sizes(), (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(packed.item<int32_t>(), 0x76543210);
  // q = 7 everywhere -> 0xFFFFFFFF, which is -1 as int32.
  EXPECT_EQ(pack_to_int32(torch::full({1, 8}, 7, torch::kInt64), 4).item<int32_t>(), -1);
  // 8-bit: four per word, offset 128.
  EXPECT_EQ(pack_to_int32(torch::tensor({{-128, -127, 0, 127}}), 8).item<int32_t>(),
            static_cast<int32_t>(0xFF800100u));
}

// 2, 3, 4 and 8 bits against tests/fixtures/pack (compressed-tensors' dense layout, built bit
// by bit in Python by make_pack_fixture.py): 3-bit values straddle words.
TEST(PackQuantized, DenseLayoutMatchesTheReferenceForEveryBitWidth) {
  const auto file = model::SafetensorsFile::open(testing::fixture("pack/pack.safetensors").string());
  for (int bits : {2, 3, 4, 8}) {
    SCOPED_TRACE(bits);
    const auto b = std::to_string(bits);
    const auto values = file->tensor("values_" + b).to(torch::kInt64);
    const auto rows = file->tensor("rows_" + b), cols = file->tensor("cols_" + b);
    EXPECT_TRUE(pack_to_int32(values, bits).equal(rows));
    EXPECT_TRUE(pack_to_int32(values, bits, 0).equal(cols));
    EXPECT_TRUE(unpack_from_int32(rows, bits, values.size(1)).to(torch::kInt64).equal(values));
    EXPECT_TRUE(unpack_from_int32(cols, bits, values.size(0), 0).to(torch::kInt64).equal(values));
  }
  EXPECT_THROW(pack_to_int32(torch::zeros({1, 4}, torch::kInt64), 9), Error);
}

TEST(PackQuantized, RoundTripsAlongEitherDimensionWithPadding) {
  auto q = torch::randint(-8, 8, {5, 21}, torch::kInt64);
  auto cols = pack_to_int32(q, 4);
  EXPECT_EQ(cols.sizes(), (std::vector<int64_t>{5, 3}));
  EXPECT_TRUE(unpack_from_int32(cols, 4, 21).to(torch::kInt64).equal(q));
  auto rows = pack_to_int32(q, 4, 0);
  EXPECT_EQ(rows.sizes(), (std::vector<int64_t>{1, 21}));
  EXPECT_TRUE(unpack_from_int32(rows, 4, 5, 0).to(torch::kInt64).equal(q));
}

}  // namespace
}  // namespace qtrain::quant

namespace qtrain::quant {
namespace {

// Block strategy (FP8_BLOCK): unit i is block (i / column blocks, i % column blocks), its
// elements row-major; a matrix that is not a multiple of the block is padded with zeros,
// which from_unit_view drops again. The scale of a block is its absmax / 448.
TEST(QuantMath, BlockUnitsArePaddedTilesOfTheMatrix) {
  QuantArgs args = *preset_scheme("fp8-block").weights;
  args.block_rows = 2;
  args.block_cols = 3;
  const auto x = torch::arange(1, 1 + 5 * 7, torch::kFloat32).reshape({5, 7});
  const auto view = unit_view(x, args);
  EXPECT_EQ(view.sizes(), (std::vector<int64_t>{3 * 3, 6}));
  EXPECT_TRUE(view[1].equal(torch::tensor({4.0f, 5.0f, 6.0f, 11.0f, 12.0f, 13.0f})));  // block (0, 1)
  EXPECT_TRUE(view[8].equal(torch::tensor({35.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f})));   // block (2, 2): padding
  EXPECT_TRUE(from_unit_view(view, x.sizes(), args).equal(x));
  const auto qp = compute_qparams(x, args, torch::kFloat32);
  EXPECT_FLOAT_EQ(qp.scale[1].item<float>(), 13.0f / 448.0f);
  EXPECT_FLOAT_EQ(qp.scale[8].item<float>(), 35.0f / 448.0f);
  // The gradient flows back through the padding to the matrix only (scales with headroom:
  // the absmax itself may land a rounding above 448).
  auto w = x.clone().requires_grad_(true);
  fake_quantize(w, {qp.scale * 2, qp.zero_point}, args).sum().backward();
  EXPECT_TRUE(w.grad().equal(torch::ones_like(x)));
}

// vLLM's W4A8-FP8 re-encoding of group scales, worked by hand: a row [448, 56, 1] (its max
// 448, r = 1): 448 -> 448 / 8 = 56 -> 56 * 8 = 448; 56 -> 7 -> 56; 1 -> 0.125 -> 1; a row
// [0.5, 0.3] (r = 0.5 / 448): 0.3 * 448 / 0.5 = 268.8 -> E4M3 256 (step 32 between 256 and
// 512) -> 32 -> 32 * 8r; a row [448, 0.05]: 0.05 -> E4M3 13 * 2^-8 -> / 8 = 3.25 * 2^-9, a
// subnormal, -> 3 * 2^-9 -> 3 * 2^-6.
TEST(QuantMath, W4a8Fp8EngineScalesFollowVllm) {
  const auto a = w4a8_fp8_engine_scales(torch::tensor({{448.0f, 56.0f, 1.0f}}));
  EXPECT_TRUE(a.equal(torch::tensor({{448.0f, 56.0f, 1.0f}}))) << a;
  const auto b = w4a8_fp8_engine_scales(torch::tensor({{0.5f, 0.3f}}));
  const float r = 0.5f / 448.0f;
  EXPECT_FLOAT_EQ(b[0][0].item<float>(), 448.0f / 8.0f * (r * 8.0f));
  EXPECT_FLOAT_EQ(b[0][1].item<float>(), 256.0f / 8.0f * (r * 8.0f));
  // A group scale far below its row's maximum falls into E4M3's subnormals after the / 8.
  const auto c = w4a8_fp8_engine_scales(torch::tensor({{448.0f, 0.05f}}));
  EXPECT_EQ(c[0][1].item<float>(), 3.0f * std::ldexp(1.0f, -6));
}

}  // namespace
}  // namespace qtrain::quant
