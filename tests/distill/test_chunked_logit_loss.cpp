// The chunked, fused ce + kd (distill/chunked_logit_loss.h) against the full-logit references
// of kd_loss.h differentiated by autograd: loss terms and gradients w.r.t. the hidden states
// and lm_head weights, on CPU in fp32; and DistillLoss with the chunked path on and off.
//
// Tolerance: both sides do the same fp32 arithmetic per token (matmul, log_softmax, the
// vocabulary sums); they differ only in how the token sums are ordered (fp64 over chunks
// against one fp32 mean) and in the weight gradient being a sum of per-chunk GEMMs against
// one GEMM, i.e. a few fp32 roundings (6e-8 each) per value. 1e-6 relative (of the largest
// gradient entry for gradients) leaves room for those and nothing else: a wrong scale, a
// dropped chunk, a mis-counted ignored label or a missing 1/T moves values by > 1e-2.
#include <gtest/gtest.h>

#include <cstdio>

#include "distill/chunked_logit_loss.h"
#include "distill/distill_loss.h"
#include "distill/kd_loss.h"

namespace qtrain::distill {
namespace {

constexpr double kRelative = 1e-6;

// Largest |a - b| relative to the largest |b|.
double relative_difference(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
}

struct Case {
  bool tied;
  double alpha, beta, temperature;
  int64_t chunk_tokens;
};

std::string describe(const Case& c) {
  char text[160];
  std::snprintf(text, sizeof(text), "tied=%d alpha=%g beta=%g T=%g chunk=%lld", c.tied, c.alpha, c.beta,
                c.temperature, (long long)c.chunk_tokens);
  return text;
}

// A small differentiable "model" with the shapes of the loss's inputs. Tied: the hidden
// states come from the embedding rows of the lm_head weight itself, so its gradient has two
// paths (embedding and logits), as in a tied CausalLM.
struct Problem {
  static constexpr int64_t kTokens = 37, kHidden = 16, kTeacherHidden = 24, kVocab = 50;
  torch::Tensor weight, mixing, input, ids, teacher_hidden, teacher_weight, labels;

  explicit Problem(bool tied) {
    torch::manual_seed(tied ? 11 : 12);
    weight = (torch::randn({kVocab, kHidden}) * 0.4).requires_grad_();
    mixing = (torch::randn({kHidden, kHidden}) * 0.5).requires_grad_();
    input = torch::randn({kTokens, kHidden});
    ids = torch::randint(0, kVocab, {kTokens});
    teacher_hidden = torch::randn({kTokens, kTeacherHidden});
    teacher_weight = torch::randn({kVocab, kTeacherHidden}) * 0.3;
    labels = torch::randint(0, kVocab, {kTokens});
    labels.index_put_({torch::tensor({0, 5, 6, 20, 36})}, kIgnoredLabel);
    tied_ = tied;
  }
  // [N, H], depends on `mixing` (and on `weight` when tied).
  torch::Tensor hidden() const {
    const auto base = tied_ ? torch::embedding(weight, ids) + 0.1 * input : input;
    return torch::tanh(base.matmul(mixing));
  }
  void zero_grad() {
    for (auto* p : {&weight, &mixing})
      if (p->grad().defined()) p->mutable_grad().zero_();
  }

 private:
  bool tied_;
};

struct Result {
  double total, ce, kd;
  torch::Tensor weight_grad, mixing_grad;
};

Result reference(Problem& p, const Case& c) {
  p.zero_grad();
  const auto logits = torch::linear(p.hidden(), p.weight);
  const auto zero = torch::zeros({});
  const auto ce = c.alpha > 0 ? next_token_cross_entropy(logits, p.labels) : zero;
  const auto kd = c.beta > 0 ? kd_kl_loss(logits, torch::linear(p.teacher_hidden, p.teacher_weight), c.temperature) : zero;
  const auto total = c.alpha * ce + c.beta * kd;
  (0.7 * total).backward();  // a grad_output other than 1
  return {total.item<double>(), ce.item<double>(), kd.item<double>(), p.weight.grad().clone(), p.mixing.grad().clone()};
}

Result chunked(Problem& p, const Case& c) {
  p.zero_grad();
  const auto terms = chunked_logit_loss(p.hidden(), p.weight, p.teacher_hidden, p.teacher_weight, p.labels,
                                        {c.alpha, c.beta, c.temperature, c.chunk_tokens});
  EXPECT_FALSE(terms.ce.requires_grad());
  EXPECT_FALSE(terms.kd.requires_grad());
  (0.7 * terms.total).backward();
  return {terms.total.item<double>(), terms.ce.item<double>(), terms.kd.item<double>(), p.weight.grad().clone(),
          p.mixing.grad().clone()};
}

TEST(ChunkedLogitLoss, TermsAndGradientsEqualTheFullLogitReference) {
  const std::vector<Case> cases = {
      {false, 0.5, 1.0, 2.0, 8}, {true, 0.5, 1.0, 2.0, 8},   // both terms, T != 1, 37 = 4 x 8 + 5
      {false, 1.0, 0.0, 1.0, 5}, {true, 1.0, 0.0, 3.0, 10},  // ce only
      {false, 0.0, 1.0, 1.0, 1}, {true, 0.0, 2.0, 0.5, 36},  // kd only: one token per chunk; 36 + 1
      {false, 0.3, 0.7, 1.0, 37}, {true, 0.3, 0.7, 4.0, 1000},  // one chunk, exactly N and larger
  };
  double worst_value = 0, worst_grad = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(describe(c));
    Problem p(c.tied);
    const auto want = reference(p, c);
    const auto got = chunked(p, c);
    EXPECT_NEAR(got.total, want.total, kRelative * std::abs(want.total));
    EXPECT_NEAR(got.ce, want.ce, kRelative * std::abs(want.ce));
    EXPECT_NEAR(got.kd, want.kd, kRelative * std::abs(want.kd));
    if (c.alpha == 0) EXPECT_EQ(got.ce, 0.0);
    if (c.beta == 0) EXPECT_EQ(got.kd, 0.0);
    EXPECT_GT(want.weight_grad.abs().max().item<double>(), 1e-3);  // the comparison is not of zeros
    const double weight_difference = relative_difference(got.weight_grad, want.weight_grad);
    const double mixing_difference = relative_difference(got.mixing_grad, want.mixing_grad);
    EXPECT_LE(weight_difference, kRelative);
    EXPECT_LE(mixing_difference, kRelative);  // the gradient w.r.t. the hidden states, chained through
    worst_value = std::max({worst_value, std::abs(got.total - want.total) / std::abs(want.total),
                            c.alpha > 0 ? std::abs(got.ce - want.ce) / want.ce : 0.0,
                            c.beta > 0 ? std::abs(got.kd - want.kd) / want.kd : 0.0});
    worst_grad = std::max({worst_grad, weight_difference, mixing_difference});
  }
  std::printf("largest relative difference to the reference: loss terms %.3g, gradients %.3g\n", worst_value,
              worst_grad);
}

// The gradient w.r.t. the hidden states themselves (a leaf here), and the labels' ignore
// convention: a token with label -100 gets no ce gradient but keeps its kd gradient.
TEST(ChunkedLogitLoss, HiddenGradientAndIgnoredLabels) {
  Problem p(false);
  const auto hidden = p.hidden().detach().requires_grad_();
  const double alpha = 0.8, beta = 0.6, temperature = 1.5;
  const auto logits = torch::linear(hidden, p.weight);
  const auto want = alpha * next_token_cross_entropy(logits, p.labels) +
                    beta * kd_kl_loss(logits, torch::linear(p.teacher_hidden, p.teacher_weight), temperature);
  const auto want_grad = torch::autograd::grad({want}, {hidden})[0];
  const auto got = chunked_logit_loss(hidden, p.weight, p.teacher_hidden, p.teacher_weight, p.labels,
                                      {alpha, beta, temperature, 6});
  const auto got_grad = torch::autograd::grad({got.total}, {hidden})[0];
  EXPECT_NEAR(got.total.item<double>(), want.item<double>(), kRelative * want.item<double>());
  EXPECT_LE(relative_difference(got_grad, want_grad), kRelative);
  // Only kd at an ignored token: d/dh of beta T/N (p_s - p_t) W at row 0 (label -100).
  const auto p_s = torch::softmax(logits.detach()[0] / temperature, -1);
  const auto p_t = torch::softmax(torch::linear(p.teacher_hidden[0], p.teacher_weight) / temperature, -1);
  const auto ignored_row = (beta * temperature / Problem::kTokens) * torch::matmul(p_s - p_t, p.weight.detach());
  EXPECT_LE(relative_difference(got_grad[0], ignored_row), kRelative);
}

// Under no_grad only the values are computed, and they are the same.
TEST(ChunkedLogitLoss, NoGradGivesTheSameValues) {
  Problem p(true);
  const Case c{true, 0.5, 1.0, 2.0, 7};
  const auto want = reference(p, c);
  torch::NoGradGuard no_grad;
  const auto got = chunked_logit_loss(p.hidden(), p.weight, p.teacher_hidden, p.teacher_weight, p.labels,
                                      {c.alpha, c.beta, c.temperature, c.chunk_tokens});
  EXPECT_FALSE(got.total.requires_grad());
  EXPECT_NEAR(got.total.item<double>(), want.total, kRelative * want.total);
}

// DistillLoss with distill.loss_chunk_tokens on and off: the same terms, and the same
// gradients for every student parameter and the hidden-state projection.
model::ModelConfig tiny_config(int64_t hidden, int64_t layers, bool tied) {
  model::ModelConfig c;
  c.model_type = "llama";
  c.vocab_size = 40;
  c.hidden_size = hidden;
  c.intermediate_size = 2 * hidden;
  c.num_hidden_layers = layers;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = hidden / 2;
  c.max_position_embeddings = 64;
  c.rms_norm_eps = 1e-5;
  c.tie_word_embeddings = tied;
  return c;
}

struct DistillRun {
  LossTerms terms;
  std::vector<torch::Tensor> grads;
};

DistillRun run_distill_loss(DistillOptions options, model::CausalLM student, model::CausalLM teacher,
                            const torch::Tensor& ids, const torch::Tensor& labels, bool expect_chunked) {
  HiddenProjections projections(options, student->config().hidden_size, teacher->config().hidden_size);
  {
    torch::NoGradGuard no_grad;
    torch::manual_seed(3);
    for (auto& w : projections->parameters()) w.normal_(0, 0.2);
  }
  DistillLoss loss(options, student, teacher, projections, torch::kFloat32);
  EXPECT_EQ(loss.chunked(), expect_chunked);
  for (auto& w : student->parameters()) w.mutable_grad() = torch::Tensor();
  auto terms = loss.compute(ids, labels);
  terms.total.backward();
  DistillRun run{terms, {}};
  for (auto& w : student->parameters()) run.grads.push_back(w.grad().clone());
  for (auto& w : projections->parameters()) run.grads.push_back(w.grad().clone());
  return run;
}

TEST(ChunkedLogitLoss, DistillLossMatchesTheFullLogitPath) {
  for (const bool tied : {false, true}) {
    SCOPED_TRACE(tied ? "tied student" : "untied student");
    model::CausalLM teacher(tiny_config(24, 2, false)), student(tiny_config(16, 1, tied));
    model::init_weights(*teacher, 0.3, 1);
    model::init_weights(*student, 0.3, 2);
    for (auto& w : teacher->parameters()) w.requires_grad_(false);
    torch::manual_seed(5);
    const auto ids = torch::randint(0, 40, {2, 9});
    auto labels = torch::randint(0, 40, {2, 9});
    labels.index_put_({1, 4}, kIgnoredLabel);
    DistillOptions options;
    options.alpha = 0.5;
    options.beta = 1.0;
    options.temperature = 2.0;
    options.gamma = 0.1;
    options.hidden_loss = config::HiddenLoss::cosine;
    options.student_layers = {0};
    options.teacher_layers = {1};
    options.loss_chunk_tokens = 0;
    const auto full = run_distill_loss(options, student, teacher, ids, labels, false);
    options.loss_chunk_tokens = 4;  // 18 tokens: 4 chunks of 4 and one of 2
    const auto chunks = run_distill_loss(options, student, teacher, ids, labels, true);
    EXPECT_NEAR(chunks.terms.total.item<double>(), full.terms.total.item<double>(), kRelative * full.terms.total.item<double>());
    EXPECT_NEAR(chunks.terms.ce.item<double>(), full.terms.ce.item<double>(), kRelative * full.terms.ce.item<double>());
    EXPECT_NEAR(chunks.terms.kd.item<double>(), full.terms.kd.item<double>(), kRelative * full.terms.kd.item<double>());
    EXPECT_EQ(chunks.terms.hidden.item<double>(), full.terms.hidden.item<double>());
    ASSERT_EQ(chunks.grads.size(), full.grads.size());
    for (size_t i = 0; i < full.grads.size(); ++i) {
      ASSERT_TRUE(full.grads[i].defined() && chunks.grads[i].defined()) << i;
      EXPECT_LE(relative_difference(chunks.grads[i], full.grads[i]), 1e-5) << "parameter " << i;
    }
  }
}

// An lm_head under a wrapper (fake quantization, pruning) computes logits the chunked loss
// cannot: DistillLoss falls back to the full logits, and the wrapper's effect is in the loss.
class DoubledWeight : public model::LinearWrapper {
 public:
  torch::Tensor forward(model::LinearImpl& linear, const torch::Tensor& x) override {
    return linear.linear(x, 2.0 * linear.weight);
  }
};

TEST(ChunkedLogitLoss, WrappedLmHeadFallsBackToFullLogits) {
  model::CausalLM teacher(tiny_config(24, 1, false)), student(tiny_config(16, 1, false));
  model::init_weights(*teacher, 0.3, 1);
  model::init_weights(*student, 0.3, 2);
  torch::manual_seed(6);
  const auto ids = torch::randint(0, 40, {1, 8});
  const auto labels = torch::randint(0, 40, {1, 8});
  DistillOptions options;
  options.alpha = 1.0;
  options.loss_chunk_tokens = 3;
  const auto plain = run_distill_loss(options, student, teacher, ids, labels, true);
  student->lm_head->set_wrapper("quant", std::make_shared<DoubledWeight>());
  const auto wrapped = run_distill_loss(options, student, teacher, ids, labels, false);
  torch::NoGradGuard no_grad;
  const auto logits = student->forward(ids);  // through the wrapper
  const auto want = next_token_cross_entropy(logits, labels).item<double>() +
                    kd_kl_loss(logits, teacher->forward(ids), 1.0).item<double>();
  EXPECT_NEAR(wrapped.terms.total.item<double>(), want, kRelative * want);
  EXPECT_GT(std::abs(wrapped.terms.total.item<double>() - plain.terms.total.item<double>()), 1e-3);
}

}  // namespace
}  // namespace qtrain::distill
