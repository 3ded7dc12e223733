// AdamW on flat buffers against LibTorch's own torch::optim::AdamW (an independent
// implementation of the same update), with decay on matrices and none on norms and biases.
#include <gtest/gtest.h>

#include "trainer/adamw.h"
#include "trainer/flat_parameters.h"

namespace qtrain::trainer {
namespace {

TEST(AdamW, MatchesTorchOptimAdamWWithoutDecayOnNormsAndBiases) {
  torch::manual_seed(3);
  const double lr = 1e-2, wd = 0.1;
  std::vector<std::pair<std::string, torch::Tensor>> ours = {
      {"layer.q_proj.weight", torch::randn({6, 5})},
      {"layer.q_proj.bias", torch::randn({6})},
      {"layer.input_layernorm.weight", torch::randn({5})},
      {"lm_head.weight", torch::randn({3, 5})}};
  std::vector<torch::Tensor> decay, no_decay;
  for (auto& [name, p] : ours) {
    auto ref = p.clone().set_requires_grad(true);
    (is_decayed(name) ? decay : no_decay).push_back(ref);
    p.set_requires_grad(true);
  }
  FlatParameters flat(ours, 64);
  AdamW adamw(flat, {0.9, 0.95, 1e-8, wd});
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(
                                 torch::optim::AdamWOptions(lr).betas({0.9, 0.95}).eps(1e-8).weight_decay(wd)));
  groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(
                                    torch::optim::AdamWOptions(lr).betas({0.9, 0.95}).eps(1e-8).weight_decay(0)));
  torch::optim::AdamW reference(groups, torch::optim::AdamWOptions(lr));

  for (int step = 0; step < 6; ++step) {
    size_t d = 0, n = 0;
    for (auto& [name, p] : ours) {
      auto g = torch::randn(p.sizes());
      p.mutable_grad().copy_(g);  // the flat gradient view
      auto& ref = is_decayed(name) ? decay[d++] : no_decay[n++];
      ref.mutable_grad() = g.clone();
    }
    adamw.step(lr);
    reference.step();
  }
  size_t d = 0, n = 0;
  for (auto& [name, p] : ours) {
    const auto& ref = is_decayed(name) ? decay[d++] : no_decay[n++];
    EXPECT_TRUE(torch::allclose(p, ref, 1e-6, 1e-7)) << name << "\n" << (p - ref).abs().max();
  }
  EXPECT_EQ(adamw.steps(), 6);
}

TEST(FlatParameters, ParametersAndGradientsAreViewsOfTheFlatBuffers) {
  torch::nn::Linear a(4, 3), b(3, 2);
  std::vector<std::pair<std::string, torch::Tensor>> params;
  for (auto& item : a->named_parameters()) params.emplace_back("a." + item.key(), item.value());
  for (auto& item : b->named_parameters()) params.emplace_back("b." + item.key(), item.value());
  const auto before = a->weight.clone();
  FlatParameters flat(params, /*bucket_bytes=*/4 * 64);
  EXPECT_TRUE(a->weight.equal(before));  // values moved with the storage
  flat.values().fill_(0.5);
  EXPECT_TRUE((a->weight == 0.5).all().item<bool>());
  // Reverse registration order: b.bias first, each entry padded to 64 elements.
  EXPECT_EQ(flat.entries().front().name, "b.bias");
  EXPECT_EQ(flat.entries()[1].offset, 64);
  EXPECT_FALSE(flat.entries().front().decay);
  // Backward accumulates into the flat gradient buffer, in place, across calls.
  auto x = torch::randn({5, 4});
  b(a(x)).sum().backward();
  const auto once = flat.grads().clone();
  EXPECT_GT(once.abs().sum().item<double>(), 0);
  b(a(x)).sum().backward();
  EXPECT_TRUE(torch::allclose(flat.grads(), 2 * once));
  EXPECT_EQ(a->weight.grad().data_ptr(), flat.grads().narrow(0, flat.entries()[3].offset, 1).data_ptr());
  // Buckets of >= 64 elements, covering every entry once, in order.
  size_t covered = 0;
  for (const auto& bucket : flat.buckets()) covered += bucket.entries.size();
  EXPECT_EQ(covered, flat.entries().size());
  EXPECT_EQ(flat.buckets().front().begin, 0);
}

// ZeRO-1 layout: over 3 shards every bucket splits into 3 equal segments of a multiple of 64
// elements, and the ranks' owned ranges cover the buffer exactly once.
TEST(FlatParameters, ShardedBucketsSplitIntoEqualAlignedSegments) {
  std::vector<std::pair<std::string, torch::Tensor>> params = {
      {"a.weight", torch::randn({7, 5})}, {"a.bias", torch::randn({7})}, {"b.weight", torch::randn({300})}};
  FlatParameters flat(params, /*bucket_bytes=*/4 * 100, /*shards=*/3);
  ASSERT_EQ(flat.buckets().size(), 2u);  // b.weight (300 >= 100), then a.bias and a.weight
  for (const auto& b : flat.buckets()) EXPECT_EQ((b.end - b.begin) % (3 * 64), 0) << b.begin;
  EXPECT_EQ(flat.buckets().back().end, flat.numel());
  auto owners = torch::zeros({flat.numel()}, torch::kInt32);
  for (int rank = 0; rank < 3; ++rank)
    for (const auto& r : flat.owned_ranges(rank)) owners.narrow(0, r.begin, r.size()).add_(1);
  EXPECT_TRUE((owners == 1).all().item<bool>());
  // Unsharded, the layout is unchanged and one range owns everything.
  FlatParameters whole(params, 4 * 100);
  ASSERT_EQ(whole.owned_ranges(0).size(), 1u);
  EXPECT_EQ(whole.owned_ranges(0)[0].size(), whole.numel());
}

// Two ZeRO-1 ranks, each on its own replica with the same gradients, update exactly their own
// segments as the replicated optimizer does (weight decay only where it applies), and hold
// moments for their segments only.
TEST(AdamW, ShardedRanksUpdateTheirSegmentsLikeTheReplicatedOptimizer) {
  torch::manual_seed(5);
  const std::vector<std::pair<std::string, std::vector<int64_t>>> shapes = {
      {"layer.q_proj.weight", {40, 9}}, {"layer.q_proj.bias", {40}}, {"layer.input_layernorm.weight", {9}},
      {"lm_head.weight", {30, 9}}};
  std::vector<std::pair<std::string, torch::Tensor>> initial;
  for (const auto& [name, shape] : shapes) initial.emplace_back(name, torch::randn(shape));
  auto replica = [&] {
    std::vector<std::pair<std::string, torch::Tensor>> p;
    for (const auto& [name, t] : initial) p.emplace_back(name, t.clone().set_requires_grad(true));
    return p;
  };
  auto full_params = replica(), params0 = replica(), params1 = replica();
  FlatParameters full(full_params, 4 * 256), shard0(params0, 4 * 256, 2), shard1(params1, 4 * 256, 2);
  const AdamWOptions options{0.9, 0.95, 1e-8, 0.1};
  AdamW reference(full, options), rank0(shard0, options, 0), rank1(shard1, options, 1);
  for (int step = 0; step < 5; ++step) {
    for (size_t i = 0; i < shapes.size(); ++i) {
      const auto g = torch::randn(initial[i].second.sizes());
      for (auto* p : {&full_params, &params0, &params1}) (*p)[i].second.mutable_grad().copy_(g);
    }
    reference.step(1e-2);
    rank0.step(1e-2);
    rank1.step(1e-2);
  }
  int64_t owned_moments = 0;
  for (auto* rank : {&rank0, &rank1})
    for (const auto& slice : rank->state_slices()) owned_moments += slice.target.numel();
  int64_t parameters = 0;
  for (const auto& [name, t] : initial) parameters += t.numel();
  EXPECT_EQ(owned_moments, 2 * parameters);  // each element's two moments live on exactly one rank
  for (auto [flat, rank] : {std::pair{&shard0, 0}, std::pair{&shard1, 1}}) {
    auto owned = torch::zeros({flat->numel()}, torch::kBool);
    for (const auto& r : flat->owned_ranges(rank)) owned.narrow(0, r.begin, r.size()).fill_(true);
    for (size_t i = 0; i < shapes.size(); ++i) {
      const auto& e = flat->entries()[i];
      const auto mask = owned.narrow(0, e.offset, e.numel).view(e.param.sizes());
      const auto& expected = full.entries()[i].param;
      ASSERT_EQ(full.entries()[i].name, e.name);
      EXPECT_TRUE(torch::allclose(e.param.masked_select(mask), expected.masked_select(mask), 1e-6, 1e-7))
          << e.name << " rank " << rank;
      EXPECT_TRUE(e.param.masked_select(~mask).equal(initial[shapes.size() - 1 - i].second.masked_select(~mask)))
          << e.name << " rank " << rank << ": a segment it does not own changed";
    }
  }
}

}  // namespace
}  // namespace qtrain::trainer
