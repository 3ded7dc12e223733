// Perplexity against transformers (tests/fixtures/make_fixtures.py): the per-window NLL
// sums and the perplexity of each fixture model on tests/fixtures/tokens.h5, windows of 64,
// the 13-token tail dropped. Tolerance 1e-5 relative (fp32 forward, float64 sums).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "eval/perplexity.h"
#include "model/hf_checkpoint.h"
#include "tests/test_util.h"

namespace qtrain::eval {
namespace {

nlohmann::json reference_of(const std::string& name) {
  std::ifstream in(testing::fixture(name + "/reference.json"));
  return nlohmann::json::parse(in);
}

class PerplexityParity : public ::testing::TestWithParam<std::string> {};

void expect_reference_perplexity(const std::string& name, const torch::Device& device) {
  const auto reference = reference_of(name);
  auto model = model::load_causal_lm(testing::fixture(name).string(), {device, torch::kFloat32});
  auto tokens = data::TokenFile::open(testing::fixture("tokens.h5").string());
  PerplexityOptions options;
  options.seq_len = reference["seq_len"];
  options.batch_size = 5;  // not a divisor of 24 windows: the last batch is short
  options.show_progress = false;
  const auto r = evaluate_perplexity(*model, tokens, options);
  EXPECT_EQ(r.windows, reference["windows"].get<int64_t>());
  EXPECT_EQ(r.tokens, reference["tokens"].get<int64_t>());
  const double expected = reference["perplexity"];
  EXPECT_NEAR(r.perplexity, expected, 1e-5 * expected);
  EXPECT_NEAR(r.mean_nll, reference["mean_nll"].get<double>(), 1e-5 * reference["mean_nll"].get<double>());
  const auto& sums = reference["window_nll_sums"];
  ASSERT_EQ(r.window_nll_sums.size(), sums.size());
  for (size_t i = 0; i < sums.size(); ++i)
    EXPECT_NEAR(r.window_nll_sums[i], sums[i].get<double>(), 1e-5 * sums[i].get<double>()) << "window " << i;
}

TEST_P(PerplexityParity, MatchesTransformers) { expect_reference_perplexity(GetParam(), torch::kCPU); }

// The same on the GPU in fp32 (fused SDPA attention on LibTorch 2.x); skipped without CUDA.
TEST_P(PerplexityParity, MatchesTransformersOnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  expect_reference_perplexity(GetParam(), torch::Device(torch::kCUDA, 0));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, PerplexityParity,
                         ::testing::Values("llama_gqa_llama3", "llama_headdim_tied", "qwen2_bias", "mistral_linear",
                                           "qwen3_tied", "qwen3_untied", "qwen3_moe", "mixtral"));

TEST(Perplexity, WindowCountDropsTheTailAndHonoursMax) {
  EXPECT_EQ(count_windows(64 * 24 + 13, 64, 0), 24);
  EXPECT_EQ(count_windows(64 * 24, 64, 0), 24);
  EXPECT_EQ(count_windows(63, 64, 0), 0);
  EXPECT_EQ(count_windows(64 * 24, 64, 5), 5);
}

TEST(Perplexity, MaxWindowsEvaluatesThePrefix) {
  const auto reference = reference_of("qwen2_bias");
  auto model = model::load_causal_lm(testing::fixture("qwen2_bias").string());
  auto tokens = data::TokenFile::open(testing::fixture("tokens.h5").string());
  PerplexityOptions options;
  options.seq_len = 64;
  options.max_windows = 3;
  options.show_progress = false;
  const auto r = evaluate_perplexity(*model, tokens, options);
  double sum = 0;
  for (int i = 0; i < 3; ++i) sum += reference["window_nll_sums"][i].get<double>();
  EXPECT_EQ(r.windows, 3);
  EXPECT_NEAR(r.mean_nll, sum / (3 * 63), 1e-5);
}

TEST(Perplexity, TooFewTokensIsAnError) {
  auto model = model::load_causal_lm(testing::fixture("qwen2_bias").string());
  auto tokens = data::TokenFile::open(testing::fixture("tokens.h5").string());
  PerplexityOptions options;
  options.seq_len = 4096;
  options.show_progress = false;
  EXPECT_THROW(evaluate_perplexity(*model, tokens, options), Error);
}

}  // namespace
}  // namespace qtrain::eval
