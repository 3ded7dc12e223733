// Qwen3 dense (model_type qwen3: q_norm/k_norm over an explicit head_dim before rotary, tied
// or untied embeddings) against a PyTorch reference of transformers' Qwen3 forward
// (tests/fixtures/qwen3_reference/make_qwen3_reference.py, Debian's python3-torch, fp32 on
// CPU): logits within 1e-5 relative to the largest reference logit (both sides fp32; only
// the summation order differs, ~1e-6). The checkpoint round-trips under HF's names, and
// q_norm/k_norm are part of the forward (perturbing them moves the logits).
#include <gtest/gtest.h>

#include <cstdio>

#include "model/hf_checkpoint.h"
#include "model/safetensors.h"
#include "tests/test_util.h"

namespace qtrain::model {
namespace {

double relative_error(const torch::Tensor& logits, const torch::Tensor& expected) {
  return (logits - expected).abs().max().item<double>() / expected.abs().max().item<double>();
}

class Qwen3Reference : public ::testing::TestWithParam<std::string> {};

TEST_P(Qwen3Reference, LogitsMatchThePyTorchReference) {
  const auto dir = testing::fixture("qwen3_reference/" + GetParam());
  auto model = load_causal_lm(dir.string(), {torch::kCPU, torch::kFloat32});
  const auto& c = model->config();
  EXPECT_EQ(c.model_type, "qwen3");
  EXPECT_TRUE(c.qk_norm);
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_NE(c.head_dim * c.num_attention_heads, c.hidden_size);  // head_dim is read, not derived
  EXPECT_EQ(c.tie_word_embeddings, GetParam() == "tied");
  int64_t parameters = 0;
  for (const auto& p : model->parameters()) parameters += p.numel();
  EXPECT_EQ(parameters, c.num_parameters());
  auto reference = SafetensorsFile::open((dir / "reference.safetensors").string());
  const auto ids = reference->tensor("input_ids");
  const auto expected = reference->tensor("logits");
  torch::NoGradGuard no_grad;
  const auto logits = model->forward(ids);
  ASSERT_EQ(logits.sizes(), expected.sizes());
  const double error = relative_error(logits, expected);
  std::printf("qwen3 %s: largest logit difference %.3g relative\n", GetParam().c_str(), error);
  EXPECT_LT(error, 1e-5);
  EXPECT_TRUE(logits.argmax(-1).equal(expected.argmax(-1)));
  // The norms are in the forward: without the key norm's weights the logits move.
  auto params = model->named_parameters();
  params["model.layers.0.self_attn.k_norm.weight"].fill_(1.0);
  EXPECT_GT(relative_error(model->forward(ids), expected), 1e-3);
}

TEST_P(Qwen3Reference, CheckpointRoundTripsUnderHfNames) {
  const auto dir = testing::fixture("qwen3_reference/" + GetParam());
  auto model = load_causal_lm(dir.string(), {torch::kCPU, torch::kFloat32});
  const auto out = testing::scratch_dir() / "saved";
  save_hf_checkpoint(out.string(), model->config(), hf_state(*model));
  const auto saved = HFCheckpoint::open(out.string());
  const auto source = HFCheckpoint::open(dir.string());
  EXPECT_EQ(saved.tensor_names(), source.tensor_names());
  EXPECT_TRUE(saved.contains("model.layers.1.self_attn.q_norm.weight"));
  EXPECT_EQ(saved.contains("lm_head.weight"), GetParam() == "untied");
  EXPECT_EQ(saved.config().model_type, "qwen3");
  auto again = load_causal_lm(out.string(), {torch::kCPU, torch::kFloat32});
  torch::NoGradGuard no_grad;
  const auto ids = torch::randint(0, 256, {1, 16}, torch::TensorOptions().dtype(torch::kInt64));
  EXPECT_TRUE(again->forward(ids).equal(model->forward(ids)));
}

INSTANTIATE_TEST_SUITE_P(Embeddings, Qwen3Reference, ::testing::Values("tied", "untied"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace qtrain::model
