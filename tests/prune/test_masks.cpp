// Pruning masks (prune/masks.h): they grow monotonically to the highest-scored units among
// those still kept, stay uniform over layers, and zero exactly the rows and columns of the
// weights that a unit covers (docs/pruning.md).
#include <gtest/gtest.h>

#include "model/hf_checkpoint.h"
#include "prune/masks.h"
#include "tests/test_util.h"

namespace qtrain::prune {
namespace {

model::CausalLM fixture_model() { return model::load_causal_lm(testing::fixture("llama_gqa_llama3").string()); }

// Scores per layer: `mlp(i)` [96] and `kv(i)` [2] from the functions.
Importance scores(int64_t layers, const std::function<torch::Tensor(int64_t)>& mlp,
                  const std::function<torch::Tensor(int64_t)>& kv) {
  Importance out;
  for (int64_t i = 0; i < layers; ++i) {
    out.mlp_channels.push_back(mlp(i).to(torch::kFloat64));
    out.kv_groups.push_back(kv(i).to(torch::kFloat64));
  }
  return out;
}

TEST(StructuredMasks, GrowToTheBestKeptUnitsAndNeverBack) {
  auto m = fixture_model();  // 2 layers, intermediate 96, 2 kv groups
  StructuredMasks masks(m->config(), torch::kCPU);
  EXPECT_FALSE(masks->any_pruned());
  // Layer 0 prefers high channel indices, layer 1 low ones.
  auto first = scores(
      2, [](int64_t i) { return i == 0 ? torch::arange(96) : torch::arange(96).flip(0); },
      [](int64_t i) { return torch::tensor({1.0, 2.0}); });
  EXPECT_TRUE(grow_masks(*masks, first, {64, 1}));
  EXPECT_TRUE(masks->layer(0).mlp_channels.slice(0, 32).all().item<bool>());
  EXPECT_FALSE(masks->layer(0).mlp_channels.slice(0, 0, 32).any().item<bool>());
  EXPECT_TRUE(masks->layer(1).mlp_channels.slice(0, 0, 64).all().item<bool>());
  EXPECT_TRUE(masks->layer(1).kv_groups.equal(torch::tensor({false, true})));
  EXPECT_EQ(masks->kept_channels(), 64);
  EXPECT_EQ(masks->kept_kv_groups(), 1);
  // New scores now favour what was pruned: a pruned unit never returns, the best of the kept win.
  auto second = scores(
      2, [](int64_t i) { return i == 0 ? torch::arange(96).flip(0) : torch::arange(96); },
      [](int64_t i) { return torch::tensor({5.0, 0.0}); });
  const auto before = masks->layer(0).mlp_channels.clone();
  EXPECT_TRUE(grow_masks(*masks, second, {48, 1}));
  EXPECT_TRUE(masks->layer(0).mlp_channels.slice(0, 32, 80).all().item<bool>());  // kept before, best now
  EXPECT_EQ(masks->layer(0).mlp_channels.sum().item<int64_t>(), 48);
  EXPECT_TRUE((masks->layer(0).mlp_channels.logical_and(before.logical_not())).sum().item<int64_t>() == 0);
  EXPECT_TRUE(masks->layer(1).mlp_channels.slice(0, 16, 64).all().item<bool>());
  EXPECT_TRUE(masks->layer(1).kv_groups.equal(torch::tensor({false, true})));  // group 0 stays pruned
  EXPECT_FALSE(grow_masks(*masks, second, {48, 1}));  // same target: nothing changes
}

TEST(StructuredMasks, ApplyZeroesExactlyWhatAUnitCovers) {
  auto m = fixture_model();
  auto reference = model::load_causal_lm(testing::fixture("llama_gqa_llama3").string());
  StructuredMasks masks(m->config(), torch::kCPU);
  masks->layer(0).mlp_channels[5] = false;
  masks->layer(1).kv_groups[1] = false;  // heads 2 and 3 (2 query heads per group), head_dim 16
  apply_masks(*m, *masks);
  auto* l0 = m->model->layers[0]->as<model::DecoderLayerImpl>();
  auto* r0 = reference->model->layers[0]->as<model::DecoderLayerImpl>();
  EXPECT_EQ(l0->mlp->gate_proj->weight[5].abs().sum().item<double>(), 0.0);
  EXPECT_EQ(l0->mlp->up_proj->weight[5].abs().sum().item<double>(), 0.0);
  EXPECT_EQ(l0->mlp->down_proj->weight.select(1, 5).abs().sum().item<double>(), 0.0);
  // Everything else of layer 0 is untouched.
  auto others = torch::ones({96}, torch::kBool);
  others[5] = false;
  const auto kept = others.nonzero().reshape({-1});
  EXPECT_TRUE(l0->mlp->gate_proj->weight.index_select(0, kept).equal(r0->mlp->gate_proj->weight.index_select(0, kept)));
  EXPECT_TRUE(l0->mlp->down_proj->weight.index_select(1, kept).equal(r0->mlp->down_proj->weight.index_select(1, kept)));
  EXPECT_TRUE(l0->self_attn->q_proj->weight.equal(r0->self_attn->q_proj->weight));
  auto& a1 = *m->model->layers[1]->as<model::DecoderLayerImpl>()->self_attn;
  auto& r1 = *reference->model->layers[1]->as<model::DecoderLayerImpl>()->self_attn;
  EXPECT_EQ(a1.q_proj->weight.slice(0, 32, 64).abs().sum().item<double>(), 0.0);
  EXPECT_TRUE(a1.q_proj->weight.slice(0, 0, 32).equal(r1.q_proj->weight.slice(0, 0, 32)));
  EXPECT_EQ(a1.k_proj->weight.slice(0, 16, 32).abs().sum().item<double>(), 0.0);
  EXPECT_EQ(a1.v_proj->weight.slice(0, 16, 32).abs().sum().item<double>(), 0.0);
  EXPECT_TRUE(a1.k_proj->weight.slice(0, 0, 16).equal(r1.k_proj->weight.slice(0, 0, 16)));
  EXPECT_EQ(a1.o_proj->weight.slice(1, 32, 64).abs().sum().item<double>(), 0.0);
  EXPECT_TRUE(a1.o_proj->weight.slice(1, 0, 32).equal(r1.o_proj->weight.slice(1, 0, 32)));
  EXPECT_EQ(kept_query_rows(masks->layer(1).kv_groups, 2, 16).equal(torch::arange(32)), true);
  EXPECT_EQ(kept_kv_rows(masks->layer(1).kv_groups, 16).equal(torch::arange(16)), true);
}

TEST(StructuredMasks, MaskedTensorsCoverSevenMatricesPerLayer) {
  auto m = fixture_model();
  StructuredMasks masks(m->config(), torch::kCPU);
  const auto masked = masked_tensors(*m, *masks);
  ASSERT_EQ(masked.size(), 14u);  // no biases in this Llama
  EXPECT_EQ(masked.front().name, "model.layers.0.self_attn.q_proj.weight");
  const auto params = m->named_parameters();
  for (const auto& t : masked) {
    ASSERT_TRUE(params.contains(t.name)) << t.name;
    EXPECT_TRUE(params[t.name].is_same(t.tensor)) << t.name;
    EXPECT_EQ(t.keep.dim(), t.tensor.dim()) << t.name;
  }
}

}  // namespace
}  // namespace qtrain::prune
