// The KV cache: a prefill and then single-token steps (and a prefill split in two chunks)
// give the logits of a full forward over the whole sequence, for every fixture architecture
// (GQA + llama3 rope, head_dim != hidden/heads + tied, qkv bias, linear rope). fp32 CPU:
// 1e-5 absolute (the same math, different matmul shapes). Each step runs one position
// through the projections whatever the prompt length, and a KV hook sees only new positions.
#include <gtest/gtest.h>

#include "common/error.h"
#include "model/causal_lm.h"
#include "model/hf_checkpoint.h"
#include "model/kv_cache.h"
#include "tests/test_util.h"

namespace qtrain::model {
namespace {

constexpr double kTolerance = 1e-5;

torch::Tensor random_ids(int64_t batch, int64_t length, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randint(0, 256, {batch, length}, torch::TensorOptions().dtype(torch::kInt64));
}

class KvCacheParity : public ::testing::TestWithParam<std::string> {};

TEST_P(KvCacheParity, StepsEqualTheFullForward) {
  auto model = load_causal_lm(testing::fixture(GetParam()).string());
  torch::NoGradGuard no_grad;
  const int64_t prompt = 11, steps = 8;
  auto ids = random_ids(2, prompt, 3);
  auto cache = model->make_kv_cache(prompt + steps);
  auto logits = model->forward(ids, cache);
  EXPECT_LT((logits - model->forward(ids)).abs().max().item<double>(), kTolerance);
  for (int64_t s = 0; s < steps; ++s) {
    auto next = logits.select(1, -1).argmax(-1, /*keepdim=*/true);  // [batch, 1]
    ids = torch::cat({ids, next}, 1);
    logits = model->forward(next, cache);
    ASSERT_EQ(logits.size(1), 1);
    const auto full = model->forward(ids).select(1, -1);
    EXPECT_LT((logits.select(1, 0) - full).abs().max().item<double>(), kTolerance) << "step " << s;
  }
  EXPECT_EQ(cache.length(), prompt + steps);
}

TEST_P(KvCacheParity, ChunkedPrefillEqualsTheFullForward) {
  auto model = load_causal_lm(testing::fixture(GetParam()).string());
  torch::NoGradGuard no_grad;
  const auto ids = random_ids(1, 24, 4);
  auto cache = model->make_kv_cache(24);
  auto first = model->forward(ids.narrow(1, 0, 9), cache);
  auto second = model->forward(ids.narrow(1, 9, 15), cache);  // 15 queries against 24 keys
  const auto full = model->forward(ids);
  EXPECT_LT((torch::cat({first, second}, 1) - full).abs().max().item<double>(), kTolerance);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, KvCacheParity,
                         ::testing::Values("llama_gqa_llama3", "llama_headdim_tied", "qwen2_bias", "mistral_linear"));

// Positions through layer 0's q_proj per decode step, after prompts of 8 and 96 tokens.
std::vector<int64_t> positions_per_step(CausalLMImpl& model, int64_t prompt, int64_t steps) {
  int64_t seen = 0;
  auto& q_proj = *model.model->layers[0]->as<DecoderLayerImpl>()->self_attn->q_proj;
  ObserveInputs observe;
  observe.watch(q_proj, [&seen](const torch::Tensor& x) { seen += x.size(0) * x.size(1); });
  auto cache = model.make_kv_cache(prompt + steps);
  model.forward(random_ids(1, prompt, 5), cache);
  std::vector<int64_t> per_step;
  for (int64_t s = 0; s < steps; ++s) {
    seen = 0;
    model.forward(torch::full({1, 1}, 7, torch::kInt64), cache);
    per_step.push_back(seen);
  }
  return per_step;
}

TEST(KvCache, DecodeStepCostDoesNotGrowWithThePrompt) {
  auto model = load_causal_lm(testing::fixture("llama_gqa_llama3").string());
  torch::NoGradGuard no_grad;
  EXPECT_EQ(positions_per_step(*model, 8, 4), std::vector<int64_t>(4, 1));
  EXPECT_EQ(positions_per_step(*model, 96, 4), std::vector<int64_t>(4, 1));
}

// Records how many positions each call of the hook gets, and passes k and v through.
struct CountingHook : KvCacheHook {
  std::vector<int64_t> positions;
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& k, const torch::Tensor& v) override {
    positions.push_back(k.size(2));
    return {k, v};
  }
};

TEST(KvCache, HookSeesOnlyTheNewPositions) {
  auto model = load_causal_lm(testing::fixture("qwen2_bias").string());
  auto hook = std::make_shared<CountingHook>();
  model->model->layers[1]->as<DecoderLayerImpl>()->self_attn->set_kv_cache_hook(hook);
  torch::NoGradGuard no_grad;
  auto cache = model->make_kv_cache(12);
  model->forward(random_ids(1, 10, 6), cache);
  model->forward(random_ids(1, 1, 7), cache);
  model->forward(random_ids(1, 1, 8), cache);
  EXPECT_EQ(hook->positions, (std::vector<int64_t>{10, 1, 1}));
}

TEST(KvCache, OverflowIsAnError) {
  auto model = load_causal_lm(testing::fixture("qwen2_bias").string());
  torch::NoGradGuard no_grad;
  auto cache = model->make_kv_cache(4);
  model->forward(random_ids(1, 4, 9), cache);
  EXPECT_THROW(model->forward(random_ids(1, 1, 9), cache), Error);
}

}  // namespace
}  // namespace qtrain::model
