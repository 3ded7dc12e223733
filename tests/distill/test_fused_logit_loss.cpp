// The fused KD + CE kernel (distill/cuda/logit_loss_kernel.cu) against the LibTorch formulas
// it replaces (kd_loss.h's definitions, per token), on a GPU-sized vocabulary: per-token KL
// and CE, and the gradient w.r.t. the student's logits, for bf16 and fp32 logits, T = 1 and
// T != 1, KD only, CE only and both, ignored labels, and a vocabulary that is not a multiple
// of the 16-byte load (the scalar path). Then the whole chunked loss on CUDA, which runs the
// kernel, against the full-logit reference differentiated by autograd.
//
// Tolerance: both sides compute in fp32; the vocabulary sums run in another order (a block
// tree against ATen's reduction), a few fp32 roundings over 10^5 terms: 1e-5 relative. A bf16
// gradient may differ by one bf16 rounding step where the fp32 values straddle a rounding
// boundary, and by the fp32 tolerance where an entry's two probabilities nearly cancel;
// anything else (a wrong scale, a missing 1/T, a shifted label) moves values by far more.
#include <gtest/gtest.h>

#include "distill/chunked_logit_loss.h"
#include "distill/kd_loss.h"
#include "tests/test_util.h"
#if QTRAIN_WITH_CUDA
#include "distill/cuda/fused_logit_loss.h"
#endif

namespace qtrain::distill {
namespace {

using testing::relative_difference;

struct KernelCase {
  const char* name;
  int64_t vocab;
  torch::ScalarType dtype;
  double temperature, alpha, beta;
};

TEST(FusedLogitLoss, PerTokenTermsAndGradientMatchTheLibTorchFormulas) {
#if !QTRAIN_WITH_CUDA
  GTEST_SKIP() << "a CPU build has no fused kernel";
#else
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const std::vector<KernelCase> cases = {
      {"bf16_both_T1", 32000, torch::kBFloat16, 1.0, 0.5, 1.0},
      {"bf16_both_T2", 32000, torch::kBFloat16, 2.0, 0.3, 0.7},
      {"bf16_kd_only_odd_vocab", 32003, torch::kBFloat16, 1.0, 0.0, 1.0},
      {"fp32_ce_only", 5003, torch::kFloat32, 1.0, 1.0, 0.0},
      {"fp32_both_T3", 4096, torch::kFloat32, 3.0, 0.5, 2.0},
  };
  const int64_t rows = 37;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    torch::manual_seed(21);
    const auto options = torch::TensorOptions().device(torch::kCUDA);
    const auto s = (torch::randn({rows, c.vocab}, options) * 3).to(c.dtype);
    const auto t = (torch::randn({rows, c.vocab}, options) * 3 + s.to(torch::kFloat32) * 0.5).to(c.dtype);
    auto labels = torch::randint(0, c.vocab, {rows}, options.dtype(torch::kInt64));
    labels.index_put_({torch::tensor({0, 7, 36}, options.dtype(torch::kInt64))}, kIgnoredLabel);
    const auto counted = (labels != kIgnoredLabel).to(torch::kFloat32);
    const auto row_weight = counted * static_cast<float>(c.alpha / counted.sum().item<double>());
    const double kd_grad_scale = c.beta * c.temperature / rows;
    // The reference, as chunked_logit_loss.cpp's LibTorch form computes it.
    const auto sf = s.to(torch::kFloat32), tf = t.to(torch::kFloat32);
    const auto log_ps = torch::log_softmax(sf / c.temperature, -1), log_pt = torch::log_softmax(tf / c.temperature, -1);
    const auto kd_row = (log_pt.exp() * (log_pt - log_ps)).sum(-1);
    const auto log_p1 = torch::log_softmax(sf, -1);
    const auto safe = labels.masked_fill(labels == kIgnoredLabel, 0).unsqueeze(1);
    const auto ce_row = (-log_p1.gather(1, safe).squeeze(1)) * counted;
    auto grad = torch::zeros_like(sf);
    if (c.beta > 0) grad += (log_ps.exp() - log_pt.exp()) * kd_grad_scale;
    if (c.alpha > 0)
      grad += (log_p1.exp() - torch::zeros_like(sf).scatter_(1, safe, 1.0)) * row_weight.unsqueeze(1);

    for (const auto grad_dtype : {torch::kFloat32, c.dtype}) {
      const auto out = cuda::fused_logit_loss(s, c.beta > 0 ? t : torch::Tensor(), labels,
                                              c.alpha > 0 ? row_weight : torch::Tensor(), kIgnoredLabel,
                                              c.temperature, kd_grad_scale, true, grad_dtype);
      ASSERT_EQ(out.grad.scalar_type(), grad_dtype);
      if (c.beta > 0) EXPECT_LE(relative_difference(out.kd_row, kd_row), 1e-5);
      else EXPECT_FALSE(out.kd_row.defined());
      if (c.alpha > 0) {
        EXPECT_LE(relative_difference(out.ce_row, ce_row), 1e-5);
        EXPECT_EQ(out.ce_row[0].item<float>(), 0.0f);  // an ignored label
      } else {
        EXPECT_FALSE(out.ce_row.defined());
      }
      if (grad_dtype == torch::kFloat32) {
        EXPECT_LE(relative_difference(out.grad, grad), 1e-5);
      } else {
        // Element by element within one rounding step of the fp32 reference, plus the fp32
        // tolerance of the largest entry: an entry is a difference of probabilities, so where
        // p_s and p_t nearly cancel, their own fp32 rounding is large next to the entry.
        const auto step = grad.abs() * std::ldexp(1.0, grad_dtype == torch::kBFloat16 ? -7 : -10) +
                          1e-5 * grad.abs().max().item<double>();
        const auto off = (out.grad.to(torch::kFloat32) - grad).abs() > step;
        EXPECT_EQ(off.sum().item<int64_t>(), 0);
      }
    }
    // Without a gradient only the terms come back.
    const auto values = cuda::fused_logit_loss(s, c.beta > 0 ? t : torch::Tensor(), labels,
                                               c.alpha > 0 ? row_weight : torch::Tensor(), kIgnoredLabel,
                                               c.temperature, kd_grad_scale, false, c.dtype);
    EXPECT_FALSE(values.grad.defined());
  }
#endif
}

// The whole chunked loss on CUDA in fp32 (the kernel inside) against the full-logit
// reference, value and gradients w.r.t. the hidden states and the lm_head weight.
TEST(FusedLogitLoss, ChunkedLossOnCudaEqualsTheFullLogitReference) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::manual_seed(22);
  const auto o = torch::TensorOptions().device(torch::kCUDA);
  const int64_t tokens = 300, hidden = 64, vocab = 1000;
  const double alpha = 0.4, beta = 1.0, temperature = 2.0;
  const auto h0 = torch::randn({tokens, hidden}, o);
  const auto w0 = torch::randn({vocab, hidden}, o) * 0.2;
  const auto teacher_hidden = torch::randn({tokens, hidden}, o);
  const auto teacher_weight = torch::randn({vocab, hidden}, o) * 0.2;
  auto labels = torch::randint(0, vocab, {tokens}, o.dtype(torch::kInt64));
  labels.index_put_({torch::tensor({3, 100}, o.dtype(torch::kInt64))}, kIgnoredLabel);

  auto h = h0.clone().requires_grad_(), w = w0.clone().requires_grad_();
  const auto logits = torch::linear(h, w);
  const auto want = alpha * next_token_cross_entropy(logits, labels) +
                    beta * kd_kl_loss(logits, torch::linear(teacher_hidden, teacher_weight), temperature);
  want.backward();
  auto hc = h0.clone().requires_grad_(), wc = w0.clone().requires_grad_();
  const auto got = chunked_logit_loss(hc, wc, teacher_hidden, teacher_weight, labels, {alpha, beta, temperature, 128});
  got.total.backward();
  EXPECT_NEAR(got.total.item<double>(), want.item<double>(), 1e-5 * want.item<double>());
  EXPECT_LE(relative_difference(hc.grad(), h.grad()), 1e-5);
  EXPECT_LE(relative_difference(wc.grad(), w.grad()), 1e-5);
}

}  // namespace
}  // namespace qtrain::distill
