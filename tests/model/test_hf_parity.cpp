// The C++ model against transformers' own forward (tests/fixtures/make_fixtures.py wrote
// the checkpoints and the logits with transformers 5.17, eager attention, fp32 on CPU).
// Tolerance: 1e-4 relative to the largest reference logit. Both sides compute in fp32 but
// sum in different orders (MKL vs. transformers' matmuls), which leaves ~1e-6 relative.
#include <gtest/gtest.h>

#include "model/hf_checkpoint.h"
#include "model/safetensors.h"
#include "tests/test_util.h"

namespace qtrain::model {
namespace {

class HFParity : public ::testing::TestWithParam<std::string> {};

void expect_reference_logits(const std::string& name, const torch::Device& device) {
  const auto dir = testing::fixture(name);
  auto model = load_causal_lm(dir.string(), {device, torch::kFloat32});
  auto reference = SafetensorsFile::open((dir / "reference.safetensors").string());
  const auto input_ids = reference->tensor("input_ids");
  const auto expected = reference->tensor("logits");
  torch::NoGradGuard no_grad;
  const auto logits = model->forward(input_ids.to(device)).cpu();
  ASSERT_EQ(logits.sizes(), expected.sizes());
  const double scale = expected.abs().max().item<double>();
  const double max_error = (logits - expected).abs().max().item<double>();
  EXPECT_LT(max_error / scale, 1e-4) << "max |diff| " << max_error << " vs max |ref| " << scale;
  // And the argmax tokens agree everywhere (a dropped bias or a wrong rope shows here too).
  EXPECT_TRUE(logits.argmax(-1).equal(expected.argmax(-1)));
}

TEST_P(HFParity, LogitsMatchTransformers) { expect_reference_logits(GetParam(), torch::kCPU); }

// fp32 on the GPU (TF32 matmuls stay off: LibTorch's default); skipped without CUDA.
TEST_P(HFParity, LogitsMatchTransformersOnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  expect_reference_logits(GetParam(), torch::Device(torch::kCUDA, 0));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, HFParity,
                         ::testing::Values("llama_gqa_llama3", "llama_headdim_tied", "qwen2_bias", "mistral_linear",
                                           "qwen3_tied", "qwen3_untied", "qwen3_moe", "mixtral"));

TEST(HFParityConfig, FixturesExerciseTheFeaturesTheyClaim) {
  auto llama3 = ModelConfig::from_file(testing::fixture("llama_gqa_llama3/config.json").string());
  EXPECT_EQ(llama3.rope.type, "llama3");
  EXPECT_EQ(llama3.kv_groups(), 2);
  EXPECT_FALSE(llama3.tie_word_embeddings);
  auto tied = ModelConfig::from_file(testing::fixture("llama_headdim_tied/config.json").string());
  EXPECT_TRUE(tied.tie_word_embeddings);
  EXPECT_EQ(tied.head_dim, 24);
  EXPECT_NE(tied.head_dim * tied.num_attention_heads, tied.hidden_size);
  EXPECT_TRUE(tied.qkv_bias && tied.o_bias);
  auto qwen = ModelConfig::from_file(testing::fixture("qwen2_bias/config.json").string());
  EXPECT_TRUE(qwen.qkv_bias);
  EXPECT_FALSE(qwen.o_bias);
  auto mistral = ModelConfig::from_file(testing::fixture("mistral_linear/config.json").string());
  EXPECT_EQ(mistral.rope.type, "linear");
  EXPECT_DOUBLE_EQ(mistral.rope.factor, 2.0);
}

}  // namespace
}  // namespace qtrain::model
