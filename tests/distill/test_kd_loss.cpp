// The loss terms against LibTorch's own functional ops and closed forms.
#include <gtest/gtest.h>

#include "distill/kd_loss.h"

namespace qtrain::distill {
namespace {

namespace F = torch::nn::functional;

TEST(KdLoss, EqualsTSquaredTimesKlDivBatchmean) {
  torch::manual_seed(0);
  auto s = torch::randn({2, 5, 11}), t = torch::randn({2, 5, 11});
  const double temperature = 2.5;
  // torch's kl_div(input = log q, target = log p, log_target) = sum p (log p - log q).
  auto reference = F::kl_div(F::log_softmax(s.view({10, 11}) / temperature, F::LogSoftmaxFuncOptions(-1)),
                             F::log_softmax(t.view({10, 11}) / temperature, F::LogSoftmaxFuncOptions(-1)),
                             F::KLDivFuncOptions().reduction(torch::kBatchMean).log_target(true)) *
                   (temperature * temperature);
  EXPECT_NEAR(kd_kl_loss(s, t, temperature).item<double>(), reference.item<double>(), 1e-6);
  EXPECT_NEAR(kd_kl_loss(t, t, 1.0).item<double>(), 0.0, 1e-7);  // identical distributions
  // bf16 logits are taken to fp32 before the softmax.
  EXPECT_NEAR(kd_kl_loss(s.to(torch::kBFloat16), t.to(torch::kBFloat16), temperature).item<double>(),
              reference.item<double>(), 5e-2);
}

TEST(KdLoss, GradientFlowsToTheStudentOnly) {
  auto s = torch::randn({4, 7}, torch::requires_grad());
  auto t = torch::randn({4, 7}, torch::requires_grad());
  kd_kl_loss(s, t.detach(), 1.0).backward();
  ASSERT_TRUE(s.grad().defined());
  // d/ds KL(p_t || softmax(s)) / N = (softmax(s) - p_t) / N.
  auto expected = (torch::softmax(s, -1) - torch::softmax(t, -1)) / 4.0;
  EXPECT_TRUE(torch::allclose(s.grad(), expected, 1e-5, 1e-6));
}

TEST(KdLoss, CrossEntropyAndHiddenTerms) {
  auto logits = torch::randn({3, 4, 9});
  auto labels = torch::randint(0, 9, {3, 4});
  auto expected = -torch::log_softmax(logits, -1).gather(-1, labels.unsqueeze(-1)).mean();
  EXPECT_NEAR(next_token_cross_entropy(logits, labels).item<double>(), expected.item<double>(), 1e-6);
  auto a = torch::randn({2, 3, 8}), b = torch::randn({2, 3, 8});
  EXPECT_NEAR(hidden_state_loss(a, b, config::HiddenLoss::mse).item<double>(), (a - b).pow(2).mean().item<double>(), 1e-6);
  EXPECT_NEAR(hidden_state_loss(a, 3 * a, config::HiddenLoss::cosine).item<double>(), 0.0, 1e-6);  // same direction
  EXPECT_NEAR(hidden_state_loss(a, -a, config::HiddenLoss::cosine).item<double>(), 2.0, 1e-6);
}

}  // namespace
}  // namespace qtrain::distill
