// Multiple-choice scoring: task files (aliases, errors with file and line), the harness's
// pair encoding, batched continuation log-likelihoods against log_softmax of one full
// forward per request summed by hand, a uniform model whose acc/acc_norm picks are known in
// closed form, and (when tests/fixtures/mc/make_mc_reference.py has been run) the numbers
// transformers gives.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "eval/multiple_choice.h"
#include "model/hf_checkpoint.h"
#include "tests/test_util.h"

namespace qtrain::eval {
namespace {

std::unique_ptr<data::Tokenizer> byte_tokenizer() {
  return data::load_tokenizer(testing::fixture("mc/byte_tokenizer/tokenizer.json").string());
}

std::filesystem::path write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path) << text;
  return path;
}

TEST(MultipleChoice, ReadsTaskFilesWithTheHarnessAliases) {
  const auto dir = testing::scratch_dir();
  const auto path = write_file(dir / "t.jsonl",
                               "{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"gold\": 1}\n\n"
                               "{\"query\": \"d\", \"endings\": [\"e\", \"f\", \"g\"], \"label\": \"2\"}\n");
  const auto task = read_mc_task(path.string());
  EXPECT_EQ(task.name, "t");
  ASSERT_EQ(task.examples.size(), 2u);
  EXPECT_EQ(task.examples[1].context, "d");
  EXPECT_EQ(task.examples[1].choices, (std::vector<std::string>{"e", "f", "g"}));
  EXPECT_EQ(task.examples[1].gold, 2);
  EXPECT_EQ(read_mc_task(testing::fixture("mc/tiny_tasks.jsonl").string()).examples.size(), 36u);
}

TEST(MultipleChoice, BadTaskFilesNameFileLineAndKey) {
  const auto dir = testing::scratch_dir();
  auto error_of = [&](const std::string& text) {
    try {
      read_mc_task(write_file(dir / "bad.jsonl", "{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"gold\": 0}\n" + text).string());
    } catch (const Error& e) {
      EXPECT_EQ(e.line_number(), 2) << e.what();
      return e.key_name();
    }
    return std::string("no error");
  };
  EXPECT_EQ(error_of("{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"gold\": 2}"), "gold");
  EXPECT_EQ(error_of("{\"context\": \"a\", \"choices\": [\"b\", \"c\"]}"), "gold");
  EXPECT_EQ(error_of("{\"context\": \"a\", \"choices\": [\"b\"], \"gold\": 0}"), "choices");
  EXPECT_EQ(error_of("{\"choices\": [\"b\", \"c\"], \"gold\": 0}"), "context");
  EXPECT_EQ(error_of("not json"), "");
  EXPECT_THROW(read_mc_task((dir / "missing.jsonl").string()), Error);
}

TEST(MultipleChoice, EncodePairMovesTrailingSpaceIntoTheContinuation) {
  const auto tokenizer = byte_tokenizer();  // one token per byte
  const auto a = encode_pair(*tokenizer, "The cat ", "sat");
  EXPECT_EQ(a.context, tokenizer->encode("The cat"));
  EXPECT_EQ(a.continuation, tokenizer->encode(" sat"));
  const auto b = encode_pair(*tokenizer, "The cat", " sat", {5});
  EXPECT_EQ(b.context.front(), 5);
  EXPECT_EQ(b.continuation, tokenizer->encode(" sat"));
  // GPT-2's merges: " sat" is one token after "The cat", and it is the continuation's.
  const auto gpt2 = data::load_tokenizer(testing::fixture("tokenizer/gpt2/tokenizer.json").string());
  const auto c = encode_pair(*gpt2, "The cat ", "sat");
  EXPECT_EQ(c.context, gpt2->encode("The cat"));
  EXPECT_EQ(c.continuation, gpt2->encode(" sat"));
  EXPECT_EQ(character_length("caf\xc3\xa9"), 4);
}

// log p(continuation | context) from one unpadded full forward: log_softmax, summed by hand.
double by_hand(model::CausalLMImpl& model, const ContinuationTokens& r) {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> seq(r.context.begin(), r.context.end());
  seq.insert(seq.end(), r.continuation.begin(), r.continuation.end());
  const auto logp = torch::log_softmax(model.forward(torch::tensor(seq).unsqueeze(0))[0].to(torch::kFloat64), -1);
  double sum = 0;
  for (size_t i = r.context.size(); i < seq.size(); ++i) sum += logp[i - 1][seq[i]].item<double>();
  return sum;
}

TEST(MultipleChoice, BatchedLoglikelihoodsEqualFullForwardsSummedByHand) {
  auto model = model::load_causal_lm(testing::fixture("llama_gqa_llama3").string());
  const auto tokenizer = byte_tokenizer();
  const auto task = read_mc_task(testing::fixture("mc/tiny_tasks.jsonl").string());
  std::vector<ContinuationTokens> requests;
  for (size_t i = 0; i < 6; ++i)
    for (const auto& c : task.examples[i].choices) requests.push_back(encode_pair(*tokenizer, task.examples[i].context, " " + c));
  const auto batched = continuation_loglikelihoods(*model, requests, 5, 256);  // 24 requests: a short last batch
  for (size_t i = 0; i < requests.size(); ++i) EXPECT_NEAR(batched[i], by_hand(*model, requests[i]), 1e-4) << i;
  // Truncated from the left to max_length + 1 tokens, as the harness does: 3 context tokens stay.
  const auto cont = static_cast<int64_t>(requests[0].continuation.size());
  const auto truncated = continuation_loglikelihoods(*model, {requests[0]}, 1, cont + 2);
  ContinuationTokens tail = requests[0];
  tail.context.erase(tail.context.begin(), tail.context.end() - 3);
  EXPECT_NEAR(truncated[0], by_hand(*model, tail), 1e-4);
  EXPECT_THROW(continuation_loglikelihoods(*model, {requests[0]}, 1, cont - 1), Error);  // no context left
}

// With the final norm's weight at zero every logit is 0: each token costs log(256) and a
// choice's score is -(1 + bytes) log 256 (the delimiter's space included). acc picks the
// shortest choice; acc_norm divides by the characters, -(1 + n)/n log 256, and picks the longest.
TEST(MultipleChoice, UniformModelPicksShortestForAccAndLongestForAccNorm) {
  auto model = model::load_causal_lm(testing::fixture("qwen2_bias").string());
  {
    torch::NoGradGuard no_grad;
    model->model->norm->weight.zero_();
  }
  const auto dir = testing::scratch_dir();
  const auto path = write_file(dir / "forced.jsonl",
                               "{\"context\": \"Pick\", \"choices\": [\"medium\", \"a\", \"the longest one\"], \"gold\": 1}\n"
                               "{\"context\": \"Pick\", \"choices\": [\"xy\", \"the longest one\", \"abc\"], \"gold\": 0}\n"
                               "{\"context\": \"Pick\", \"choices\": [\"the longest one\", \"abcd\", \"z\"], \"gold\": 0}\n");
  const auto r = evaluate_multiple_choice(*model, *byte_tokenizer(), read_mc_task(path.string()), McOptions{});
  EXPECT_EQ(r.count, 3);
  EXPECT_EQ(r.predictions, (std::vector<int64_t>{1, 0, 2}));
  EXPECT_EQ(r.predictions_norm, (std::vector<int64_t>{2, 1, 0}));
  EXPECT_NEAR(r.acc, 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(r.acc_norm, 1.0 / 3.0, 1e-12);
  EXPECT_NEAR(r.loglikelihoods[0][1], -2 * std::log(256.0), 1e-4);
  EXPECT_NEAR(r.acc_stderr, std::sqrt((2 * std::pow(1 - 2.0 / 3, 2) + std::pow(2.0 / 3, 2)) / 2) / std::sqrt(3.0), 1e-12);
}

TEST(MultipleChoice, MeanStderrIsTheHarnesses) {
  EXPECT_NEAR(mean_stderr({1, 0, 1, 1}), std::sqrt(0.25) / 2.0, 1e-12);
  EXPECT_TRUE(std::isnan(mean_stderr({1})));
}

class McReference : public ::testing::TestWithParam<std::string> {};

// Per-choice log-likelihoods and accuracies against transformers (make_mc_reference.py).
TEST_P(McReference, MatchesTransformers) {
  const auto path = testing::fixture("mc/reference_" + GetParam() + ".json");
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "run tests/fixtures/mc/make_mc_reference.py to make " << path;
  const auto reference = nlohmann::json::parse(testing::read_text(path));
  auto model = model::load_causal_lm(testing::fixture(GetParam()).string());
  McOptions options;
  options.batch_size = 7;
  const auto r = evaluate_multiple_choice(*model, *byte_tokenizer(),
                                          read_mc_task(testing::fixture("mc/tiny_tasks.jsonl").string()), options);
  // The reference sums the token log-probs in fp32, as the harness's HFLM does (we sum in
  // float64): 1e-4 absolute for the forward, plus 1e-6 relative for fp32's rounding of sums
  // of up to ~1000 nats (ulp 6e-5).
  const double tolerance = reference["tolerance"];
  ASSERT_EQ(r.count, reference["count"].get<int64_t>());
  for (int64_t i = 0; i < r.count; ++i)
    for (size_t c = 0; c < r.loglikelihoods[i].size(); ++c) {
      const double expected = reference["loglikelihoods"][i][c];
      EXPECT_NEAR(r.loglikelihoods[i][c], expected, tolerance + 1e-6 * std::abs(expected)) << i << "/" << c;
    }
  EXPECT_DOUBLE_EQ(r.acc, reference["acc"].get<double>());
  EXPECT_DOUBLE_EQ(r.acc_norm, reference["acc_norm"].get<double>());
}

INSTANTIATE_TEST_SUITE_P(Fixtures, McReference,
                         ::testing::Values("llama_gqa_llama3", "llama_headdim_tied", "qwen2_bias", "mistral_linear"));

}  // namespace
}  // namespace qtrain::eval
