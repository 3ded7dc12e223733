// The fused CUDA fake-quant kernel (quant/cuda/fake_quant_kernel.cu) against its reference,
// the unfused LibTorch form in quant_math.cpp: the same bits forward and the same
// straight-through gradient backward, for every strategy, sign convention, bit width and
// floating dtype, on vectorized and scalar paths, with values clipped on both sides. Runs
// on the GPU machine (scripts/gpu-check.sh); without CUDA there is no kernel to test.
#include <gtest/gtest.h>

#include "common/compat.h"
#include "quant/quant_math.h"
#if QTRAIN_WITH_CUDA
#include "quant/cuda/fused_fake_quant.h"
#endif

namespace qtrain::quant {
namespace {

struct Case {
  const char* name;
  QuantArgs args;
  std::vector<int64_t> shape;
};

QuantArgs make_args(int bits, const char* type, bool symmetric, Strategy strategy, int64_t group = 0) {
  QuantArgs a;
  a.num_bits = bits;
  a.type = type;
  a.symmetric = symmetric;
  a.strategy = strategy;
  a.group_size = group;
  return a;
}

std::vector<Case> cases() {
  return {
      {"int4_sym_group", make_args(4, "int", true, Strategy::group, 32), {64, 256}},
      {"int4_asym_group", make_args(4, "int", false, Strategy::group, 128), {48, 256}},
      {"int8_sym_channel", make_args(8, "int", true, Strategy::channel), {96, 200}},
      {"int8_sym_tensor", make_args(8, "int", true, Strategy::tensor), {2, 33, 64}},
      {"int8_asym_token", make_args(8, "int", false, Strategy::token), {3, 17, 96}},
      {"int8_sym_token_odd_hidden", make_args(8, "int", true, Strategy::token), {5, 7, 12}},
      {"int2_sym_group_odd", make_args(2, "int", true, Strategy::group, 6), {9, 18}},
      {"fp8_tensor", make_args(8, "float", true, Strategy::tensor), {40, 128}},
      {"fp8_channel", make_args(8, "float", true, Strategy::channel), {40, 72}},
      // The formats of issue 17: E2M1 under NVFP4's scale / global scale and MXFP4's powers
      // of two, FP8 blocks (a padded, permuted view), w4afp8's engine dequantization scales.
      {"nvfp4", *preset_scheme("nvfp4a16").weights, {64, 256}},
      {"nvfp4_activations", *preset_scheme("nvfp4").weights, {3, 11, 64}},
      {"mxfp4", *preset_scheme("mxfp4a16").weights, {48, 128}},
      {"fp8_block", *preset_scheme("fp8-block").weights, {200, 300}},
      {"w4afp8", *preset_scheme("w4afp8").weights, {64, 256}},
  };
}

class FusedFakeQuant : public ::testing::TestWithParam<torch::ScalarType> {};

TEST_P(FusedFakeQuant, MatchesTheUnfusedReferenceBitForBitForwardAndBackward) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device: the fused kernel runs on CUDA only";
  ASSERT_TRUE(fused_fake_quant_allowed()) << "QTRAIN_FAKE_QUANT_KERNEL=torch is set";
  const auto dtype = GetParam();
  torch::manual_seed(7);
  for (const auto& c : cases()) {
    SCOPED_TRACE(c.name);
    auto x = (torch::randn(c.shape) * 3).to(torch::kCUDA, dtype);
    // Scales from 70% of the range: values beyond it clip, on both sides.
    auto qp = compute_qparams(x.to(torch::kFloat32), c.args, torch::kFloat32);
    qp.scale = qp.scale * 0.7;
    auto fused_in = x.clone().requires_grad_(true);
    auto reference_in = x.clone().requires_grad_(true);
    auto fused = fake_quantize(fused_in, qp, c.args);
    auto reference = fake_quantize_unfused(reference_in, qp, c.args);
    ASSERT_EQ(fused.scalar_type(), dtype);
    EXPECT_TRUE(torch::equal(fused, reference)) << "max diff " << (fused - reference).abs().max().item<double>();
    auto upstream = torch::randn(c.shape).to(torch::kCUDA, dtype);
    fused.backward(upstream);
    reference.backward(upstream);
    EXPECT_TRUE(torch::equal(fused_in.grad(), reference_in.grad()));
    const auto clipped = (fused_in.grad() == 0).logical_and(upstream != 0).sum().item<int64_t>();
    EXPECT_GT(clipped, 0) << "the case clips nothing, so the mask is untested";
    EXPECT_LT(clipped, x.numel() / 2);
  }
}

TEST_P(FusedFakeQuant, NonContiguousInputIsQuantizedInItsLogicalLayout) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device: the fused kernel runs on CUDA only";
  torch::manual_seed(8);
  const auto args = make_args(8, "int", true, Strategy::token);
  auto x = torch::randn({4, 64, 16}).to(torch::kCUDA, GetParam()).transpose(1, 2);  // [4, 16, 64], strided
  auto qp = compute_qparams(x.to(torch::kFloat32), args, torch::kFloat32);
  EXPECT_TRUE(torch::equal(fake_quantize(x, qp, args), fake_quantize_unfused(x, qp, args)));
}

// Weights: fp32 master weights come out of the kernel in bf16 under autocast, the cast the
// matmul would have made; the gradient goes back to fp32 unchanged.
TEST(FusedFakeQuantAutocast, Fp32WeightsComeOutInTheAutocastDtype) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device: the fused kernel runs on CUDA only";
  torch::manual_seed(9);
  const auto args = make_args(4, "int", true, Strategy::group, 128);
  auto w = torch::randn({256, 512}, torch::kCUDA);
  const auto qp = compute_qparams(w, args, torch::kBFloat16);
  auto fused_in = w.clone().requires_grad_(true);
  auto reference_in = w.clone().requires_grad_(true);
  torch::Tensor fused;
  {
    compat::AutocastGuard autocast(torch::kCUDA, torch::kBFloat16);
    fused = fake_quantize_for_matmul(fused_in, qp, args);
  }
  auto reference = fake_quantize_unfused(reference_in, qp, args).to(torch::kBFloat16);
  ASSERT_EQ(fused.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(fused, reference));
  auto upstream = torch::randn({256, 512}, torch::kCUDA).to(torch::kBFloat16);
  fused.backward(upstream);
  reference.backward(upstream);
  EXPECT_EQ(fused_in.grad().scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(fused_in.grad(), reference_in.grad()));
  // Without autocast the dtype stays.
  EXPECT_EQ(fake_quantize_for_matmul(w, qp, args).scalar_type(), torch::kFloat32);
}

// The fused min-max scale kernel (quant/cuda/qparams_kernel.cu) against the reference it
// replaces, qparams_from_minmax over aminmax, on CUDA: the same bits for every storage
// dtype, with all-zero units (epsilon scale), one-signed units (the zero point at the grid's
// edge), vectorized and scalar unit lengths.
TEST_P(FusedFakeQuant, MinMaxScalesMatchTheReferenceBitForBit) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device: the fused kernel runs on CUDA only";
  const auto dtype = GetParam();
  torch::manual_seed(10);
  const std::vector<Case> scale_cases = {
      {"int4_sym_group128", make_args(4, "int", true, Strategy::group, 128), {512, 1024}},
      {"int4_asym_group32", make_args(4, "int", false, Strategy::group, 32), {300, 96}},
      {"int8_sym_channel", make_args(8, "int", true, Strategy::channel), {384, 2048}},
      {"int8_asym_token", make_args(8, "int", false, Strategy::token), {2, 200, 96}},
      {"int2_sym_group_odd", make_args(2, "int", true, Strategy::group, 6), {300, 18}},
      {"fp8_channel", make_args(8, "float", true, Strategy::channel), {260, 72}},
  };
  for (const auto& c : scale_cases) {
    for (const auto scale_dtype : {torch::kBFloat16, torch::kFloat16, torch::kFloat32}) {
      SCOPED_TRACE(std::string(c.name) + " scales in " + c10::toString(scale_dtype));
      auto x = (torch::randn(c.shape) * 0.05).to(torch::kCUDA, dtype);
      auto rows = x.view({-1, x.size(-1)});
      rows[0].zero_();       // scale = the storage dtype's epsilon
      rows[1].abs_();        // min 0: asymmetric zero point at qmin
      rows[2].abs_().neg_();  // max 0: at qmax
      const auto view = unit_view(x, c.args);
#if QTRAIN_WITH_CUDA
      ASSERT_TRUE(cuda::fused_minmax_qparams_applies(view));
#endif
      const auto [lo, hi] = torch::aminmax(view, -1, true);
      const auto reference = qparams_from_minmax(lo, hi, c.args, scale_dtype);
      const auto fused = compute_qparams(x, c.args, scale_dtype);
      EXPECT_TRUE(torch::equal(fused.scale, reference.scale))
          << (fused.scale != reference.scale).sum().item<int64_t>() << " of " << reference.scale.numel() << " differ";
      EXPECT_TRUE(torch::equal(fused.zero_point, reference.zero_point));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, FusedFakeQuant,
                         ::testing::Values(torch::kFloat32, torch::kBFloat16, torch::kFloat16),
                         [](const auto& info) { return std::string(c10::toString(info.param)); });

}  // namespace
}  // namespace qtrain::quant
