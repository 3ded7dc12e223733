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

}  // namespace
}  // namespace qtrain::trainer
