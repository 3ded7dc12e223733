// The decoder's fused CUDA kernels (model/cuda/fused_layers.h) against their LibTorch
// references (rms_norm_reference, swiglu_reference, apply_rotary_reference), forward and
// backward, in the dtype combinations the trainer meets: the fp32 student under autocast
// (fp32 residual stream and norms, bf16 projections, fp32 rotary tables) and the bf16 teacher;
// 16-byte and scalar paths; the strided q/k views the attention hands over. Then a distillation
// run on CUDA with the kernels against the same run with QTRAIN_MODEL_KERNELS=torch.
//
// Tolerances. Bit-exact where the kernel performs the reference's operations in its order
// (SwiGLU and rotary forward). RMSNorm sums the row in another order: fp32 outputs within
// 1e-5 relative, narrow outputs (rounded twice) within two rounding steps. Backward passes
// compute the chained derivative in fp32 and round once where autograd rounds each
// contribution: 1e-5 relative for fp32 gradients, one rounding step of the dtype for narrow
// ones (rotary: relative to the largest entry, against the exact fp64 gradient).
#include <gtest/gtest.h>

#include <regex>

#include "model/layers.h"
#include "model/rope.h"
#include "tests/test_util.h"
#if QTRAIN_WITH_CUDA
#include "model/cuda/fused_layers.h"
#endif

namespace qtrain::model {
namespace {

using testing::relative_difference;

// One rounding step of `dtype` relative to a value (fp32: the tolerance of reordered sums).
double step_of(torch::ScalarType dtype) {
  return dtype == torch::kBFloat16 ? std::ldexp(1.0, -7) : dtype == torch::kFloat16 ? std::ldexp(1.0, -10) : 1e-5;
}

// Elements of `got` further from `want` than `steps` rounding steps of `dtype`, each relative
// to its own value.
int64_t beyond_steps(const torch::Tensor& got, const torch::Tensor& want, torch::ScalarType dtype, int steps = 1) {
  const auto w = want.to(torch::kFloat64);
  return ((got.to(torch::kFloat64) - w).abs() > w.abs() * (steps * step_of(dtype)) + 1e-12).sum().item<int64_t>();
}

#define SKIP_WITHOUT_KERNELS()                                                            \
  do {                                                                                    \
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device: the kernels run on CUDA only"; \
  } while (0)

struct NormCase {
  const char* name;
  torch::ScalarType x, w;
  int64_t hidden;
};

TEST(FusedLayers, RmsNormMatchesTheReferenceForwardAndBackward) {
  SKIP_WITHOUT_KERNELS();
#if QTRAIN_WITH_CUDA
  const std::vector<NormCase> cases = {{"fp32_student", torch::kFloat32, torch::kFloat32, 2048},
                                       {"bf16_teacher", torch::kBFloat16, torch::kBFloat16, 2048},
                                       {"bf16_x_fp32_w", torch::kBFloat16, torch::kFloat32, 512},
                                       {"fp32_odd_hidden", torch::kFloat32, torch::kFloat32, 102},
                                       {"fp16_odd_hidden", torch::kFloat16, torch::kFloat16, 70}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    torch::manual_seed(31);
    const auto x0 = (torch::randn({3, 37, c.hidden}, torch::kCUDA) * 2).to(c.x);
    const auto w0 = (torch::rand({c.hidden}, torch::kCUDA) + 0.5).to(c.w);
    ASSERT_TRUE(cuda::fused_rms_norm_applies(x0, w0));
    auto x = x0.clone().requires_grad_(), w = w0.clone().requires_grad_();
    auto xr = x0.clone().requires_grad_(), wr = w0.clone().requires_grad_();
    const auto got = cuda::fused_rms_norm(x, w, 1e-5);
    const auto want = rms_norm_reference(xr, wr, 1e-5);
    ASSERT_EQ(got.scalar_type(), want.scalar_type());
    ASSERT_EQ(got.sizes(), want.sizes());
    // A narrow output rounds twice (x * rstd to x's dtype, then the product): two steps.
    EXPECT_EQ(beyond_steps(got, want, want.scalar_type(), 2), 0)
        << "max relative difference " << relative_difference(got, want);
    const auto upstream = torch::randn(got.sizes(), torch::kCUDA).to(got.scalar_type());
    got.backward(upstream);
    want.backward(upstream);
    EXPECT_LE(relative_difference(x.grad(), xr.grad()), c.x == torch::kFloat32 ? 1e-5 : 2e-2);
    EXPECT_LE(relative_difference(w.grad(), wr.grad()), c.w == torch::kFloat32 ? 1e-5 : 2e-2);
  }
#endif
}

TEST(FusedLayers, SwigluIsBitExactForwardAndWithinOneRoundingBackward) {
  SKIP_WITHOUT_KERNELS();
#if QTRAIN_WITH_CUDA
  for (const auto& [dtype, n] : std::vector<std::pair<torch::ScalarType, int64_t>>{
           {torch::kBFloat16, 8192}, {torch::kFloat32, 8192}, {torch::kBFloat16, 93}, {torch::kFloat16, 96}}) {
    SCOPED_TRACE(std::string(c10::toString(dtype)) + " x " + std::to_string(n));
    torch::manual_seed(32);
    const auto g0 = (torch::randn({2, 41, n}, torch::kCUDA) * 3).to(dtype), u0 = torch::randn({2, 41, n}, torch::kCUDA).to(dtype);
    auto g = g0.clone().requires_grad_(), u = u0.clone().requires_grad_();
    auto gr = g0.clone().requires_grad_(), ur = u0.clone().requires_grad_();
    const auto got = cuda::fused_swiglu(g, u);
    const auto want = swiglu_reference(gr, ur);
    EXPECT_TRUE(torch::equal(got, want)) << "max relative difference " << relative_difference(got, want);
    const auto upstream = torch::randn(got.sizes(), torch::kCUDA).to(dtype);
    got.backward(upstream);
    want.backward(upstream);
    EXPECT_EQ(beyond_steps(g.grad(), gr.grad(), dtype), 0);
    EXPECT_EQ(beyond_steps(u.grad(), ur.grad(), dtype), 0);
  }
#endif
}

TEST(FusedLayers, RotaryOnStridedQueriesIsBitExactForwardAndMatchesBackward) {
  SKIP_WITHOUT_KERNELS();
#if QTRAIN_WITH_CUDA
  struct RotaryCase {
    const char* name;
    torch::ScalarType x, tables;
    int64_t head_dim;
  };
  for (const auto& c : std::vector<RotaryCase>{{"bf16_q_fp32_tables", torch::kBFloat16, torch::kFloat32, 64},
                                               {"bf16_teacher", torch::kBFloat16, torch::kBFloat16, 128},
                                               {"fp32", torch::kFloat32, torch::kFloat32, 64},
                                               {"odd_half", torch::kFloat32, torch::kFloat32, 18}}) {
    SCOPED_TRACE(c.name);
    torch::manual_seed(33);
    const int64_t batch = 2, seq = 45, heads = 6;
    // The attention's view: [batch, seq, heads * head_dim] -> [batch, heads, seq, head_dim].
    const auto projected = torch::randn({batch, seq, heads * c.head_dim}, torch::kCUDA).to(c.x);
    const auto x0 = projected.view({batch, seq, heads, c.head_dim}).transpose(1, 2);
    ASSERT_FALSE(x0.is_contiguous());
    const auto angles = torch::rand({seq, c.head_dim}, torch::kCUDA) * 6;
    const auto cos = angles.cos().to(c.tables), sin = angles.sin().to(c.tables);
    ASSERT_TRUE(cuda::fused_rotary_applies(x0, cos, sin));
    auto p = projected.clone().requires_grad_(), pr = projected.clone().requires_grad_();
    const auto view = [&](const torch::Tensor& t) { return t.view({batch, seq, heads, c.head_dim}).transpose(1, 2); };
    const auto got = cuda::fused_rotary(view(p), cos, sin);
    const auto want = apply_rotary_reference(view(pr), cos, sin);
    ASSERT_EQ(got.scalar_type(), want.scalar_type());
    EXPECT_TRUE(got.is_contiguous());
    EXPECT_TRUE(torch::equal(got, want)) << "max relative difference " << relative_difference(got, want);
    const auto upstream = torch::randn(got.sizes(), torch::kCUDA).to(got.scalar_type());
    got.backward(upstream);
    want.backward(upstream);
    // Against the exact (fp64) gradient, relative to the largest entry: autograd's three
    // separately rounded contributions can cancel, so element-wise steps would not do.
    auto p64 = projected.to(torch::kFloat64).requires_grad_();
    apply_rotary_reference(view(p64), cos.to(torch::kFloat64), sin.to(torch::kFloat64)).backward(upstream.to(torch::kFloat64));
    EXPECT_LE(relative_difference(p.grad(), p64.grad()), step_of(c.x));
    EXPECT_LE(relative_difference(pr.grad(), p64.grad()), 4 * step_of(c.x));  // the reference itself, for scale
  }
#endif
}

// A distillation run on CUDA with the fused kernels (default) and with QTRAIN_MODEL_KERNELS=torch:
// the same losses step by step, to the fp32 rounding that the reordered row sums introduce.
TEST(FusedLayers, TrainingOnCudaMatchesTheLibTorchKernels) {
  SKIP_WITHOUT_KERNELS();
  const auto dir = testing::scratch_dir();
  const std::string args = "--config tests/fixtures/train_tiny.yaml --set model.device=cuda --set model.dtype=fp32 "
                           "--set checkpoint.enabled=false --set logging.tensorboard=false --set run.output_dir=";
  std::filesystem::create_directories(dir / "fused");
  std::filesystem::create_directories(dir / "torch");
  const auto fused = testing::run_tool(dir / "fused", "qtrain", args + "'" + (dir / "fused").string() + "'");
  ASSERT_EQ(fused.status, 0) << fused.err;
  const auto reference = testing::run_tool(dir / "torch", "qtrain", args + "'" + (dir / "torch").string() + "'",
                                           "QTRAIN_MODEL_KERNELS=torch");
  ASSERT_EQ(reference.status, 0) << reference.err;
  const auto a = testing::step_records(dir / "fused"), b = testing::step_records(dir / "torch");
  ASSERT_EQ(a.size(), 8u);
  ASSERT_EQ(b.size(), 8u);
  for (const auto& [step, record] : a) {
    const double x = record["loss"].get<double>(), y = b.at(step)["loss"].get<double>();
    EXPECT_NEAR(x, y, 1e-4 * std::abs(y)) << "step " << step;
  }
}

}  // namespace
}  // namespace qtrain::model
