// The FP4 reference (quant/fp4.h) against compressed-tensors' definitions (docs/notes/fp4_formats.md):
// cast_to_fp4's rounding intervals on a fine sweep, the 16 codes and the nibble order of
// pack_fp4_to_uint8, NVFP4's and MXFP4's scales on worked examples, and a whole weight
// quantized by tests/fixtures/fp4/make_fp4_fixture.py (compressed-tensors' algorithms in
// python3-torch), which must come out bit for bit.
#include <gtest/gtest.h>

#include <cmath>

#include "model/safetensors.h"
#include "quant/fp4.h"
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

}  // namespace
}  // namespace qtrain::quant
