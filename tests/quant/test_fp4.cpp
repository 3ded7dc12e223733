// The FP4 reference (quant/fp4.h) against compressed-tensors' definitions (docs/notes/fp4_formats.md):
// cast_to_fp4's rounding intervals on a fine sweep, the 16 codes and the nibble order of
// pack_fp4_to_uint8, NVFP4's and MXFP4's scales on worked examples, and a whole weight
// quantized by tests/fixtures/fp4/make_fp4_fixture.py (compressed-tensors' algorithms in
// python3-torch), which must come out bit for bit.
#include <gtest/gtest.h>

#include <cmath>

#include "model/safetensors.h"
#include "quant/fp4.h"
#include "quant/fp8.h"
#include "quant/quant_math.h"
#include "tests/test_util.h"

namespace qtrain::quant {
namespace {

// compressed-tensors' FP4_E2M1_DATA.cast_to_fp4, by its intervals (applied to |x|, clamped).
float cast_to_fp4(float x) {
  const float a = std::min(std::abs(x), 6.0f);
  float q;
  if (a <= 0.25f) q = 0.0f;
  else if (a < 0.75f) q = 0.5f;
  else if (a <= 1.25f) q = 1.0f;
  else if (a < 1.75f) q = 1.5f;
  else if (a <= 2.5f) q = 2.0f;
  else if (a < 3.5f) q = 3.0f;
  else if (a <= 5.0f) q = 4.0f;
  else q = 6.0f;
  return x < 0 ? -q : q;
}

TEST(Fp4, RoundingFollowsCastToFp4OnASweepThroughEveryTie) {
  const auto x = torch::arange(-8.0, 8.0 + 1.0 / 64, 1.0 / 64, torch::kFloat32);  // ties are multiples of 1/4
  const auto q = round_to_fp4_e2m1(x);
  for (int64_t i = 0; i < x.numel(); ++i) {
    const float xi = x[i].item<float>();
    ASSERT_EQ(q[i].item<float>(), cast_to_fp4(xi)) << "x = " << xi;
  }
}

TEST(Fp4, CodesAndPackingOrder) {
  const auto values = torch::tensor({0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f, -0.0f, -0.5f, -1.0f, -1.5f,
                                     -2.0f, -3.0f, -4.0f, -6.0f});
  const auto codes = encode_fp4_e2m1(values);
  EXPECT_TRUE(codes.equal(torch::arange(16, torch::kInt64).to(torch::kUInt8))) << codes;
  EXPECT_TRUE(decode_fp4_e2m1(codes).equal(values));
  EXPECT_TRUE(torch::signbit(decode_fp4_e2m1(codes)[8]).item<bool>());  // code 8 is -0
  // [[1, -6, 0.5, 3]]: codes 2, 15, 1, 5 -> bytes 2 | 15 << 4, 1 | 5 << 4.
  const auto row = encode_fp4_e2m1(torch::tensor({{1.0f, -6.0f, 0.5f, 3.0f}}));
  const auto packed = pack_fp4(row);
  ASSERT_EQ(packed.sizes(), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(packed[0][0].item<int64_t>(), 0xF2);
  EXPECT_EQ(packed[0][1].item<int64_t>(), 0x51);
  EXPECT_TRUE(unpack_fp4(packed).equal(row));
}

TEST(Fp4, Nvfp4ScalesAreE4M3UnderAPerTensorGlobalScale) {
  // Tensor absmax 12: global 448 * 6 / 12 = 224. Group absmax 3: 224 * 3 / 6 = 112, an E4M3
  // value (1.75 * 2^6), effective scale 112 / 224 = 0.5, so 3 -> 6 exactly. Group absmax 0.7:
  // 26.133 -> 26 on E4M3's grid (step 2 in [16, 32)). A group of zeros gets 0.125.
  const auto global = nvfp4_global_scale(torch::tensor(12.0f));
  EXPECT_FLOAT_EQ(global.item<float>(), 224.0f);
  const auto scales = nvfp4_group_scales(torch::tensor({3.0f, 0.7f, 0.0f, 1000.0f}), global);
  EXPECT_TRUE(scales.equal(torch::tensor({112.0f, 26.0f, 0.125f, 448.0f}))) << scales;
  const auto effective = scales[0] / global;
  EXPECT_EQ(round_to_fp4_e2m1(torch::tensor(3.0f) / effective).item<float>(), 6.0f);
}

TEST(Fp4, Mxfp4ExponentsRoundTheAbsmaxToAPowerOfTwoByItsBf16Bits) {
  // The scale is p / 4, so that the group's absmax lands near E2M1's 6 = 1.5 * 2^2. 6 = 1.5 * 2^2
  // -> p = 4 (mantissa below 1.75), e = 127 + 2 - 2 = 127, scale 1; 7 = 1.75 * 2^2 -> p = 8,
  // e = 128, scale 2; 0.1 = 1.6 * 2^-4 -> p = 2^-4, e = 121, scale 2^-6; zeros -> 0.
  const auto e = mxfp4_scale_exponents(torch::tensor({6.0f, 7.0f, 0.1f, 0.0f}));
  EXPECT_TRUE(e.equal(torch::tensor({127, 128, 121, 0}, torch::kInt64).to(torch::kUInt8))) << e;
  EXPECT_TRUE(mxfp4_scales(e).slice(0, 0, 3).equal(torch::tensor({1.0f, 2.0f, 0.015625f})));
}

TEST(Fp4, AWeightQuantizesAsCompressedTensorsDoes) {
  const auto file = model::SafetensorsFile::open(testing::fixture("fp4/fp4.safetensors").string());
  const auto& f = *file;
  const auto w = f.tensor("weight");
  {  // NVFP4: global scale, E4M3 group scales of 16, codes.
    const auto groups = w.reshape({-1, kNvfp4GroupSize});
    const auto global = nvfp4_global_scale(w.abs().max());
    const auto scales = nvfp4_group_scales(groups.abs().amax(1, true), global);
    const auto q = round_to_fp4_e2m1(groups / (scales / global));
    EXPECT_TRUE(global.equal(f.tensor("nvfp4.weight_global_scale")));
    EXPECT_TRUE(scales.reshape({8, -1}).equal(f.tensor("nvfp4.weight_scale")));
    EXPECT_TRUE(pack_fp4(encode_fp4_e2m1(q.reshape({8, 64}))).equal(f.tensor("nvfp4.weight_packed")));
    EXPECT_TRUE((q * (scales / global)).reshape({8, 64}).equal(f.tensor("nvfp4.dequantized")));
    EXPECT_TRUE(scales.max().item<float>() == 448.0f);  // the outlier's group saturates E4M3
  }
  {  // MXFP4: E8M0 exponents of groups of 32.
    const auto groups = w.reshape({-1, kMxfp4GroupSize});
    const auto exponents = mxfp4_scale_exponents(groups.abs().amax(1, true));
    const auto q = round_to_fp4_e2m1(groups / mxfp4_scales(exponents));
    EXPECT_TRUE(exponents.reshape({8, -1}).equal(f.tensor("mxfp4.weight_scale"))) << exponents.reshape({8, -1});
    EXPECT_TRUE(pack_fp4(encode_fp4_e2m1(q.reshape({8, 64}))).equal(f.tensor("mxfp4.weight_packed")));
    EXPECT_TRUE((q * mxfp4_scales(exponents)).reshape({8, 64}).equal(f.tensor("mxfp4.dequantized")));
  }
}


// The fake quantization of quant_math.h with the nvfp4 and mxfp4 presets' weight args gives
// the fixture's dequantized weights: the path training, export and qeval share is the
// reference's, not only the functions above.
TEST(Fp4, FakeQuantOfThePresetsEqualsTheFixture) {
  const auto file = model::SafetensorsFile::open(testing::fixture("fp4/fp4.safetensors").string());
  const auto w = file->tensor("weight");
  for (const auto* scheme : {"nvfp4a16", "mxfp4a16"}) {
    const auto args = *preset_scheme(scheme).weights;
    const auto qp = compute_qparams(w, args);
    const auto expected = file->tensor(std::string(scheme == std::string("nvfp4a16") ? "nvfp4" : "mxfp4") + ".dequantized");
    EXPECT_TRUE(fake_quantize(w, qp, args).equal(expected)) << scheme;
    EXPECT_TRUE(dequantize(quantize(unit_view(w, args), qp, args), qp).reshape(w.sizes()).equal(expected)) << scheme;
  }
}

// Pack then unpack, and encode then decode, are the identity on every representable value:
// all 16 codes in every position of a byte.
TEST(Fp4, EveryCodeRoundTripsInBothNibbles) {
  const auto codes = torch::arange(16, torch::kInt64).to(torch::kUInt8);
  const auto pairs = torch::stack({codes.repeat_interleave(16), codes.repeat({16})}, 1);  // [256, 2]
  const auto packed = pack_fp4(pairs);
  EXPECT_EQ(std::get<0>(torch::_unique(packed.to(torch::kInt64))).numel(), 256);  // every byte once
  EXPECT_TRUE(unpack_fp4(packed).equal(pairs));
  const auto values = decode_fp4_e2m1(pairs);
  EXPECT_TRUE(encode_fp4_e2m1(values).equal(pairs));
  EXPECT_TRUE(round_to_fp4_e2m1(values).equal(values));  // grid values are fixed points
}

// Scale edge cases: a group of zeros gets the 0.125 scale and decodes to zeros; group scales
// in E4M3's subnormal range survive the export's E4M3 encoding; a tensor of zeros, whose
// global scale 2688 / 0 overflows, gets the largest finite float and quantizes to zeros
// instead of NaN; MXFP4's zero groups take exponent 0.
TEST(Fp4, ScaleEdgeCases) {
  const auto args = *preset_scheme("nvfp4a16").weights;
  {  // a zero group beside a normal one
    auto w = torch::zeros({1, 32});
    w.narrow(1, 16, 16).copy_(torch::linspace(-3, 3, 16));
    const auto qp = compute_qparams(w, args);
    EXPECT_EQ(qp.scale[0].item<float>(), 0.125f);
    const auto out = fake_quantize(w, qp, args);
    EXPECT_TRUE(out.narrow(1, 0, 16).eq(0).all().item<bool>());
    EXPECT_TRUE(torch::isfinite(out).all().item<bool>());
  }
  {  // a group 2^-16 times smaller than the largest: its E4M3 scale 448 * 2^-16 is subnormal
     // (below 2^-6) and rounds to 4 * 2^-9
    auto w = torch::full({1, 32}, 0.5f);
    w.narrow(1, 0, 16).fill_(0.5f * std::ldexp(1.0f, -16));
    const auto qp = compute_qparams(w, args);
    EXPECT_EQ(qp.scale[0].item<float>(), std::ldexp(1.0f, -7));
    const auto stored = encode_fp8_e4m3(qp.scale);
    EXPECT_TRUE(decode_fp8_e4m3(stored).equal(qp.scale));  // exact through the export's bytes
    const auto out = fake_quantize(w, qp, args);
    EXPECT_GT(out.narrow(1, 0, 16).abs().min().item<float>(), 0.0f);  // the small group is not flushed
  }
  {  // a tensor of zeros, and one so small that 2688 / absmax overflows fp32
    for (const float value : {0.0f, 1e-39f}) {
      const auto w = torch::full({2, 16}, value);
      const auto qp = compute_qparams(w, args);
      EXPECT_TRUE(torch::isfinite(qp.global_scale).all().item<bool>()) << value;
      const auto out = fake_quantize(w, qp, args);
      EXPECT_TRUE(torch::isfinite(out).all().item<bool>()) << value;
      EXPECT_LE((out - w).abs().max().item<float>(), std::abs(value)) << value;
    }
  }
  {  // MXFP4: a zero group has exponent 0 (2^-127) and decodes to zeros
    const auto mx = *preset_scheme("mxfp4a16").weights;
    auto w = torch::zeros({1, 64});
    w.narrow(1, 32, 32).fill_(1.0f);
    const auto qp = compute_qparams(w, mx);
    EXPECT_EQ(mxfp4_scale_exponents(torch::zeros({1}))[0].item<int>(), 0);
    EXPECT_TRUE(fake_quantize(w, qp, mx).equal(w));  // 1 is on the grid under scale 2^-2 * 4
  }
}

// The straight-through gradient passes inside the grid (|x| / scale <= 6) and stops outside;
// NVFP4's learned group scales (LSQ) get a gradient through scale / global_scale.
TEST(Fp4, StraightThroughAndLearnedScaleGradients) {
  const auto args = *preset_scheme("nvfp4a16").weights;
  auto w = torch::linspace(-2, 2, 16).reshape({1, 16}).requires_grad_(true);
  auto qp = compute_qparams(w.detach(), args);
  // A scale that clips: half the range.
  qp.scale = qp.scale / 2;
  fake_quantize(w, qp, args).sum().backward();
  const auto inside = (w.detach() / effective_scale(qp)).abs() <= 6;
  EXPECT_TRUE(w.grad().equal(inside.to(torch::kFloat32)));
  EXPECT_GT(inside.logical_not().sum().item<int64_t>(), 0);
  auto learned = compute_qparams(w.detach(), args);
  learned.scale = learned.scale.clone().requires_grad_(true);
  fake_quantize(w.detach(), learned, args).pow(2).sum().backward();
  ASSERT_TRUE(learned.scale.grad().defined());
  EXPECT_NE(learned.scale.grad().abs().sum().item<float>(), 0.0f);
}

}  // namespace
}  // namespace qtrain::quant
