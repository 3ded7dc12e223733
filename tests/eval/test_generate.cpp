// Generation: greedy decoding with the KV cache picks what argmax over full forwards picks,
// for every fixture architecture, with int8/fp8 KV-cache quantization attached, and from an
// exported integer checkpoint; sampling is reproducible for a seed and never leaves the
// top-k set; top-p keeps the nucleus transformers' TopPLogitsWarper keeps.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "common/error.h"
#include "data/token_file.h"
#include "eval/generate.h"
#include "model/hf_checkpoint.h"
#include "quant/export.h"
#include "quant/kv_cache_quant.h"
#include "quant/load_compressed.h"
#include "quant/quantized_model.h"
#include "tests/test_util.h"

namespace qtrain::eval {
namespace {

const std::vector<int64_t> kPrompt = {72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100};

// The reference: no cache, the whole sequence through the model for every new token.
std::vector<int64_t> greedy_without_cache(model::CausalLMImpl& model, std::vector<int64_t> ids, int64_t n) {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> out;
  for (int64_t i = 0; i < n; ++i) {
    const auto logits = model.forward(torch::tensor(ids).unsqueeze(0));
    out.push_back(logits[0][-1].argmax().item<int64_t>());
    ids.push_back(out.back());
  }
  return out;
}

class GenerateFixtures : public ::testing::TestWithParam<std::string> {};

TEST_P(GenerateFixtures, GreedyEqualsArgmaxOfFullForwards) {
  auto model = model::load_causal_lm(testing::fixture(GetParam()).string());
  GenerateOptions o;
  o.max_new_tokens = 16;
  const auto r = generate(*model, kPrompt, o);
  EXPECT_EQ(r.tokens, greedy_without_cache(*model, kPrompt, 16));
  EXPECT_EQ(r.decode_steps, 15);
  EXPECT_FALSE(r.stopped_at_eos);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GenerateFixtures,
                         ::testing::Values("llama_gqa_llama3", "llama_headdim_tied", "qwen2_bias", "mistral_linear"));

void calibrate_kv(model::CausalLMImpl& model, const std::string& kind) {
  quant::attach_kv_cache_quant(model, config::parse_choice<config::KvCache>(kind, "kv_cache"));
  auto tokens = data::TokenFile::open(testing::fixture("tokens.h5").string());
  quant::calibrate_activations(model, [&] { model.forward(tokens.read(0, 4 * 64).view({4, 64})); });
}

// The quantized KV cache is simulated in generation as in a full forward: the hook runs on
// the new keys and values before they are cached.
TEST(Generate, QuantizedKvCacheGivesTheFullForwardLogits) {
  for (const std::string kind : {"int8", "fp8"}) {
    auto model = model::load_causal_lm(testing::fixture("llama_gqa_llama3").string());
    calibrate_kv(*model, kind);
    torch::NoGradGuard no_grad;
    auto ids = torch::tensor(kPrompt).unsqueeze(0);
    auto cache = model->make_kv_cache(static_cast<int64_t>(kPrompt.size()) + 6);
    auto logits = model->forward(ids, cache);
    for (int s = 0; s < 6; ++s) {
      auto next = logits.select(1, -1).argmax(-1, true);
      ids = torch::cat({ids, next}, 1);
      logits = model->forward(next, cache);
      const auto full = model->forward(ids).select(1, -1);
      EXPECT_LT((logits.select(1, 0) - full).abs().max().item<double>(), 1e-5) << kind << " step " << s;
    }
  }
}

TEST(Generate, ExportedIntegerCheckpointDecodesAsItsFullForward) {
  auto fake = model::load_causal_lm(testing::fixture("llama_gqa_llama3").string());
  quant::attach_fake_quant(*fake, quant::assign_schemes(*fake, quant::parse_rules({"lm_head=none", "re:.*=w4a16-g16"})),
                           quant::FakeQuantOptions{});
  const auto dir = testing::scratch_dir() / "exported";
  quant::export_compressed_tensors(*fake, dir.string(), {torch::kBFloat16, ""});
  auto integer = quant::load_for_eval(dir.string());
  GenerateOptions o;
  o.max_new_tokens = 12;
  EXPECT_EQ(generate(*integer, kPrompt, o).tokens, greedy_without_cache(*integer, kPrompt, 12));
  // The fake-quant student (same weights, unquantized parts in fp32) decodes the same way.
  EXPECT_EQ(generate(*fake, kPrompt, o).tokens, greedy_without_cache(*fake, kPrompt, 12));
}

TEST(Generate, StopsAtEos) {
  auto model = model::load_causal_lm(testing::fixture("qwen2_bias").string());
  GenerateOptions o;
  o.max_new_tokens = 10;
  const auto free_run = generate(*model, kPrompt, o).tokens;
  o.eos_id = free_run[3];
  const auto stopped = generate(*model, kPrompt, o);
  EXPECT_TRUE(stopped.stopped_at_eos);
  const auto first = std::find(free_run.begin(), free_run.end(), free_run[3]) - free_run.begin();
  EXPECT_EQ(stopped.tokens, std::vector<int64_t>(free_run.begin(), free_run.begin() + first + 1));
}

TEST(Generate, SamplingIsReproducibleForASeed) {
  auto model = model::load_causal_lm(testing::fixture("llama_headdim_tied").string());
  GenerateOptions o;
  o.max_new_tokens = 24;
  o.sampling.temperature = 1.5;
  o.sampling.seed = 11;
  const auto a = generate(*model, kPrompt, o).tokens, b = generate(*model, kPrompt, o).tokens;
  EXPECT_EQ(a, b);
  o.sampling.seed = 12;
  EXPECT_NE(generate(*model, kPrompt, o).tokens, a);
  EXPECT_NE(a, greedy_without_cache(*model, kPrompt, 24));  // it did sample
}

TEST(Generate, SamplesStayInTheTopK) {
  auto model = model::load_causal_lm(testing::fixture("mistral_linear").string());
  GenerateOptions o;
  o.max_new_tokens = 20;
  o.sampling.temperature = 5.0;  // nearly uniform: without the filter, most picks would fall outside
  o.sampling.top_k = 3;
  std::set<int64_t> ranks_seen;
  for (uint64_t seed = 0; seed < 3; ++seed) {
    o.sampling.seed = seed;
    const auto tokens = generate(*model, kPrompt, o).tokens;
    auto ids = kPrompt;
    torch::NoGradGuard no_grad;
    for (const auto t : tokens) {
      const auto logits = model->forward(torch::tensor(ids).unsqueeze(0))[0][-1];
      const auto order = logits.argsort(-1, /*descending=*/true);
      const auto rank = (order == t).nonzero().item<int64_t>();
      EXPECT_LT(rank, 3) << "token " << t;
      ranks_seen.insert(rank);
      ids.push_back(t);
    }
  }
  EXPECT_EQ(ranks_seen.size(), 3u);  // all of the top 3 were drawn at some point
}

TEST(Generate, TopPKeepsTheNucleus) {
  // Probabilities 0.5, 0.3, 0.15, 0.05 (shuffled ids): p = 0.75 keeps {0.5, 0.3}, as
  // transformers removes the tokens whose ascending cumulative probability is <= 1 - p.
  const auto logits = torch::tensor({0.15, 0.5, 0.05, 0.3}).log();
  const auto kept = torch::isfinite(filter_logits(logits, 0, 0.75));
  EXPECT_TRUE(torch::equal(kept, torch::tensor({false, true, false, true})));
  EXPECT_TRUE(torch::isfinite(filter_logits(logits, 0, 0.01)).equal(torch::tensor({false, true, false, false})));
  EXPECT_TRUE(torch::isfinite(filter_logits(logits, 2, 1.0)).equal(torch::tensor({false, true, false, true})));
  EXPECT_EQ(torch::isfinite(filter_logits(logits, 0, 1.0)).sum().item<int64_t>(), 4);
}

TEST(Generate, BadOptionsAreErrors) {
  auto model = model::load_causal_lm(testing::fixture("qwen2_bias").string());
  GenerateOptions o;
  EXPECT_THROW(generate(*model, {}, o), Error);
  EXPECT_THROW(generate(*model, {300}, o), Error);
  o.sampling.top_p = 0;
  EXPECT_THROW(generate(*model, kPrompt, o), Error);
}

}  // namespace
}  // namespace qtrain::eval
