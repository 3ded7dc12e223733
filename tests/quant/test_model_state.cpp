// quant::split_state: the weights of a model with fake quantization (learned scales
// included) and an fp8 KV cache attached are exactly the parameters of the plain model, by
// name and tensor; everything quant/ attached is quantizer state, and nothing is in both.
#include <gtest/gtest.h>

#include <set>

#include "model/hf_checkpoint.h"
#include "quant/kv_cache_quant.h"
#include "quant/model_state.h"
#include "quant/quantized_model.h"
#include "tests/test_util.h"

namespace qtrain::quant {
namespace {

TEST(ModelState, SplitsWeightsFromQuantizerState) {
  const auto path = testing::fixture("llama_gqa_llama3").string();
  auto plain = model::load_causal_lm(path), m = model::load_causal_lm(path);
  FakeQuantOptions options;
  options.learnable_scales = true;
  attach_fake_quant(*m, assign_schemes(*m, parse_rules({"lm_head=none", "re:.*=w4a16-g32"})), options);
  attach_kv_cache_quant(*m, config::KvCache::fp8);
  const auto state = split_state(*m);
  auto reference = plain->named_parameters();
  ASSERT_EQ(state.weights.size(), reference.size());
  for (const auto& [name, w] : state.weights) {
    ASSERT_TRUE(reference.contains(name)) << name;
    EXPECT_TRUE(w.equal(reference[name])) << name;
  }
  std::set<std::string> quantizer;
  int64_t learned = 0;
  for (const auto& [name, t] : state.quantizer) {
    EXPECT_TRUE(is_quantizer_state(name)) << name;
    EXPECT_TRUE(quantizer.insert(name).second) << name;
    learned += t.requires_grad();
  }
  EXPECT_EQ(learned, 14);  // one learned weight scale per quantized linear: 7 per layer, 2 layers
  EXPECT_TRUE(quantizer.count("model.layers.1.self_attn.kv_cache.key_scale")) << *quantizer.begin();
  EXPECT_EQ(quantizer.size() + state.weights.size(), m->named_parameters().size() + m->named_buffers().size() -
                                                         plain->named_buffers().size());
  EXPECT_FALSE(is_quantizer_state("model.layers.0.mlp.down_proj.weight"));
}

}  // namespace
}  // namespace qtrain::quant
