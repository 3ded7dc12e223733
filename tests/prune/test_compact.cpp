// Physical removal (prune/compact.h): the compacted model has the kept sizes in its config
// and matrices, computes the masked model's logits and perplexity (fp32: 1e-5 relative),
// and survives a save and load as a Hugging Face folder; on every axis: MLP channels, KV
// groups, decoder layers (depth), hidden channels, and a mixture's experts (Qwen3-MoE with a
// dense layer, Mixtral; the transformers-made fixtures).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "data/token_file.h"
#include "eval/perplexity.h"
#include "model/hf_checkpoint.h"
#include "model/moe.h"
#include "prune/compact.h"
#include "tests/test_util.h"

namespace qtrain::prune {
namespace {

model::CausalLM fixture_model() { return model::load_causal_lm(testing::fixture("llama_gqa_llama3").string()); }


// Random scores, different per layer, so that every layer keeps other channels.
Importance random_scores(int64_t layers, uint64_t seed) {
  torch::manual_seed(seed);
  Importance out;
  for (int64_t i = 0; i < layers; ++i) {
    out.mlp_channels.push_back(torch::rand({96}, torch::kFloat64));
    out.kv_groups.push_back(torch::rand({2}, torch::kFloat64));
  }
  return out;
}

TEST(Compact, SmallerModelComputesWhatTheMaskedOneDid) {
  auto m = fixture_model();
  StructuredMasks masks(m->config(), torch::kCPU);
  grow_masks(*masks, random_scores(2, 3), {48, 1});
  ASSERT_FALSE(masks->layer(0).mlp_channels.equal(masks->layer(1).mlp_channels));
  apply_masks(*m, *masks);
  auto compacted = compact(*m, *masks);
  const auto& c = compacted.model->config();
  EXPECT_EQ(c.intermediate_size, 48);
  EXPECT_EQ(c.num_attention_heads, 2);
  EXPECT_EQ(c.num_key_value_heads, 1);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.hidden_size, 64);
  auto& l1 = *compacted.model->model->layers[1]->as<model::DecoderLayerImpl>();
  EXPECT_EQ(l1.mlp->gate_proj->weight.sizes(), (std::vector<int64_t>{48, 64}));
  EXPECT_EQ(l1.mlp->down_proj->weight.sizes(), (std::vector<int64_t>{64, 48}));
  EXPECT_EQ(l1.self_attn->q_proj->weight.sizes(), (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(l1.self_attn->k_proj->weight.sizes(), (std::vector<int64_t>{16, 64}));
  EXPECT_EQ(l1.self_attn->o_proj->weight.sizes(), (std::vector<int64_t>{64, 32}));
  EXPECT_EQ(l1.self_attn->num_heads, 2);
  EXPECT_LT(c.num_parameters(), m->config().num_parameters());
  torch::NoGradGuard no_grad;
  torch::manual_seed(1);
  const auto ids = torch::randint(0, 256, {2, 48}, torch::kInt64);
  const auto a = m->forward(ids), b = compacted.model->forward(ids);
  EXPECT_LT(((a - b).abs().max() / a.abs().max()).item<double>(), 1e-5);
  const double masked = testing::fixture_perplexity(*m), small = testing::fixture_perplexity(*compacted.model);
  EXPECT_NEAR(small, masked, 1e-5 * masked);
  // Pruning did change the model: this is not the unpruned perplexity.
  EXPECT_GT(std::abs(masked - testing::fixture_perplexity(*fixture_model())), 1e-3 * masked);

  // As a Hugging Face folder: config.json with the new sizes and explicit head_dim.
  const auto dir = testing::scratch_dir() / "pruned";
  model::save_causal_lm(*compacted.model, dir.string());
  const auto json = nlohmann::json::parse(testing::read_text(dir / "config.json"));
  EXPECT_EQ(json["intermediate_size"], 48);
  EXPECT_EQ(json["num_attention_heads"], 2);
  EXPECT_EQ(json["num_key_value_heads"], 1);
  EXPECT_EQ(json["head_dim"], 16);
  EXPECT_EQ(json["hidden_size"], 64);
  auto loaded = model::load_causal_lm(dir.string());
  EXPECT_NEAR(testing::fixture_perplexity(*loaded), masked, 1e-5 * masked);
}

TEST(Compact, KeptIndicesFollowTheMasks) {
  auto m = fixture_model();
  StructuredMasks masks(m->config(), torch::kCPU);
  masks->layer(0).kv_groups[0] = false;
  masks->layer(1).kv_groups[0] = false;
  masks->layer(0).mlp_channels.slice(0, 0, 48).fill_(false);
  masks->layer(1).mlp_channels.slice(0, 48, 96).fill_(false);
  auto compacted = compact(*m, *masks);
  EXPECT_TRUE(compacted.kept_rows.at("model.layers.0.self_attn.q_proj").equal(torch::arange(32, 64)));
  EXPECT_TRUE(compacted.kept_rows.at("model.layers.0.self_attn.k_proj").equal(torch::arange(16, 32)));
  EXPECT_TRUE(compacted.kept_columns.at("model.layers.0.self_attn.o_proj").equal(torch::arange(32, 64)));
  EXPECT_TRUE(compacted.kept_rows.at("model.layers.0.mlp.up_proj").equal(torch::arange(48, 96)));
  EXPECT_TRUE(compacted.kept_columns.at("model.layers.1.mlp.down_proj").equal(torch::arange(0, 48)));
  EXPECT_EQ(compacted.kept_rows.count("model.layers.0.mlp.down_proj"), 0u);
  auto& source = *m->model->layers[1]->as<model::DecoderLayerImpl>();
  auto& target = *compacted.model->model->layers[1]->as<model::DecoderLayerImpl>();
  EXPECT_TRUE(target.mlp->down_proj->weight.equal(source.mlp->down_proj->weight.slice(1, 0, 48)));
  EXPECT_TRUE(target.self_attn->v_proj->weight.equal(source.self_attn->v_proj->weight.slice(0, 16, 32)));
  EXPECT_TRUE(target.input_layernorm->weight.equal(source.input_layernorm->weight));
}


// A random mask keeping `kept` of `n` units.
torch::Tensor random_keep(int64_t n, int64_t kept) {
  return torch::zeros({n}, torch::kBool).index_fill(0, torch::randperm(n).narrow(0, 0, kept), true);
}

double relative_difference(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).abs().max() / a.abs().max()).item<double>();
}

// The masked model (weights masked, forward masks on), its compacted copy, and the copy
// saved and reloaded: the same logits.
void expect_compacted_equals_masked(model::CausalLMImpl& m, StructuredMasksImpl& masks, const model::ModelConfig& expect) {
  apply_masks(m, masks);
  apply_forward_masks(m, masks);
  auto compacted = compact(m, masks);
  const auto& c = compacted.model->config();
  EXPECT_EQ(c.num_hidden_layers, expect.num_hidden_layers);
  EXPECT_EQ(c.hidden_size, expect.hidden_size);
  EXPECT_EQ(c.num_key_value_heads, expect.num_key_value_heads);
  EXPECT_EQ(c.num_experts, expect.num_experts);
  EXPECT_EQ(c.mlp_only_layers, expect.mlp_only_layers);
  torch::NoGradGuard no_grad;
  torch::manual_seed(1);
  const auto ids = torch::randint(0, 256, {2, 40}, torch::kInt64);
  const auto a = m.forward(ids), b = compacted.model->forward(ids);
  EXPECT_LT(relative_difference(a, b), 1e-5);
  const auto dir = testing::scratch_dir() / "compacted";
  model::save_causal_lm(*compacted.model, dir.string());
  const auto config = nlohmann::json::parse(testing::read_text(dir / "config.json"));
  EXPECT_EQ(config["num_hidden_layers"], expect.num_hidden_layers);
  EXPECT_EQ(config["hidden_size"], expect.hidden_size);
  if (config.contains("layer_types")) EXPECT_EQ(static_cast<int64_t>(config["layer_types"].size()), expect.num_hidden_layers);
  auto reloaded = model::load_causal_lm(dir.string());
  EXPECT_LT(relative_difference(a, reloaded->forward(ids)), 1e-5);
}

class CompactDepthAndHidden : public ::testing::TestWithParam<std::string> {};

// Layer 0 dropped, 48 of 64 hidden channels and one KV group of layer 1 kept.
TEST_P(CompactDepthAndHidden, SmallerModelComputesWhatTheMaskedOneDid) {
  auto m = model::load_causal_lm(testing::fixture(GetParam()).string());
  const auto reference = m->forward(torch::arange(32).reshape({1, 32}));
  StructuredMasks masks(m->config(), torch::kCPU);
  torch::manual_seed(5);
  masks->depth[0] = false;
  masks->hidden.copy_(random_keep(64, 48));
  masks->layer(1).kv_groups[0] = false;
  auto expect = m->config();
  expect.num_hidden_layers = 1;
  expect.hidden_size = 48;
  expect.num_key_value_heads = 1;
  expect_compacted_equals_masked(*m, *masks, expect);
  torch::NoGradGuard no_grad;
  EXPECT_GT(relative_difference(reference, m->forward(torch::arange(32).reshape({1, 32}))), 1e-2);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CompactDepthAndHidden, ::testing::Values("llama_gqa_llama3", "qwen3_tied"));

// Experts: the kept ones renumbered, their router rows with them; the softmax and top-k of
// the masked router (-inf logits) are those of the smaller router. Qwen3-MoE's layer 1 is
// dense (mlp_only_layers [1]): with layer 0 dropped it becomes layer 0.
TEST(Compact, ExpertsLayersAndHiddenOfAMixture) {
  for (const std::string family : {"qwen3_moe", "mixtral"}) {
    SCOPED_TRACE(family);
    auto m = model::load_causal_lm(testing::fixture(family).string());
    torch::NoGradGuard no_grad;
    const auto ids = torch::arange(48).reshape({2, 24});
    const auto reference = m->forward(ids);
    StructuredMasks masks(m->config(), torch::kCPU);
    torch::manual_seed(9);
    masks->depth[0] = false;
    masks->hidden.copy_(random_keep(64, 48));
    for (int64_t i = 0; i < 3; ++i)
      if (masks->layer(i).experts.defined()) masks->layer(i).experts.copy_(random_keep(4, 3));
    auto expect = m->config();
    expect.num_hidden_layers = 2;
    expect.hidden_size = 48;
    expect.num_experts = 3;
    if (family == "qwen3_moe") expect.mlp_only_layers = {0};
    expect_compacted_equals_masked(*m, *masks, expect);
    EXPECT_GT(relative_difference(reference, m->forward(ids)), 1e-2);
    // A dropped expert is never chosen by the masked router.
    auto* moe = m->model->layers[2]->as<model::DecoderLayerImpl>()->moe.get();
    moe->set_record_routing(true);
    m->forward(ids);
    const auto dropped = masks->layer(2).experts.logical_not().nonzero().reshape({-1});
    EXPECT_EQ(moe->last_expert_tokens().index_select(0, dropped).sum().item<int64_t>(), 0);
    EXPECT_EQ(moe->last_routing().probabilities.index_select(1, dropped).abs().sum().item<double>(), 0.0);
    moe->set_record_routing(false);
  }
}

}  // namespace
}  // namespace qtrain::prune
