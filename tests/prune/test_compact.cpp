// Physical removal (prune/compact.h): the compacted model has the kept sizes in its config
// and matrices, computes the masked model's logits and perplexity (fp32: 1e-5 relative),
// and survives a save and load as a Hugging Face folder.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "data/token_file.h"
#include "eval/perplexity.h"
#include "model/hf_checkpoint.h"
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
  grow_masks(*masks, random_scores(2, 3), 48, 1);
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

}  // namespace
}  // namespace qtrain::prune
