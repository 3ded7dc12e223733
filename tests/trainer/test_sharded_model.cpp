// ZeRO-2/3 and activation checkpointing on one rank, against the plain model: the sharded
// model (trainer/sharded_model.h) gathers each decoder layer into freed-and-reallocated
// buffers, GradSync packs the .grad tensors into owned gradient storage, and the losses and
// every gradient equal those of the unsharded model's own backward (the same kernels on the
// same values: to 1e-6, where only the order of the two micro-batches' sums can differ).
// Multi-rank runs of the same code are in test_qtrain_training.cpp (ZeroStages*).
#include <gtest/gtest.h>

#include "common/compat.h"
#include "model/causal_lm.h"
#include "trainer/adamw.h"
#include "trainer/flat_parameters.h"
#include "trainer/grad_sync.h"
#include "trainer/collective.h"
#include "trainer/mpi_collective.h"
#include "trainer/sharded_model.h"

namespace qtrain::trainer {
namespace {

model::ModelConfig tiny_config(bool tied) {
  model::ModelConfig c;
  c.model_type = "llama";
  c.vocab_size = 40;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 8;
  c.max_position_embeddings = 64;
  c.rms_norm_eps = 1e-5;
  c.tie_word_embeddings = tied;
  return c;
}

std::vector<std::pair<std::string, torch::Tensor>> named(torch::nn::Module& m) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (auto& item : m.named_parameters()) out.emplace_back(item.key(), item.value());
  return out;
}

// A loss that reaches every parameter: next-token cross-entropy on the logits.
torch::Tensor loss_of(model::CausalLMImpl& m, const torch::Tensor& ids) {
  auto logits = m.forward(ids.narrow(1, 0, ids.size(1) - 1));
  return torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}),
                                              ids.narrow(1, 1, ids.size(1) - 1).reshape({-1}));
}

struct Case {
  bool tied;
  int zero_stage;
  bool checkpointing;
};

class ShardedModelOneRank : public ::testing::TestWithParam<Case> {};

TEST_P(ShardedModelOneRank, LossesAndGradientsEqualThePlainModel) {
  const auto [tied, stage, checkpointing] = GetParam();
  model::CausalLM reference(tiny_config(tied)), sharded(tiny_config(tied));
  model::init_weights(*reference, 0.2, 11);
  {
    torch::NoGradGuard no_grad;
    auto from = reference->named_parameters();
    for (auto& item : sharded->named_parameters()) item.value().copy_(from[item.key()]);
  }
  torch::manual_seed(5);
  const std::vector<torch::Tensor> micro_batches = {torch::randint(0, 40, {2, 9}), torch::randint(0, 40, {3, 9})};

  // Reference: two micro-batches accumulated by autograd into .grad.
  double reference_loss = 0;
  for (const auto& ids : micro_batches) {
    auto loss = loss_of(*reference, ids);
    loss.backward();
    reference_loss += loss.item<double>();
  }

  MpiCollective collective;  // one rank: the collectives are no-ops, the packing is not
  FlatOptions options;
  options.bucket_bytes = 4 * 256;  // several buckets per unit
  options.zero_stage = stage;
  options.unit_of = sharding_unit;
  FlatParameters flat(named(*sharded), options);
  std::unique_ptr<ShardedModel> shards;
  if (stage == 3)
    shards = std::make_unique<ShardedModel>(*sharded, flat, collective, torch::kFloat32, checkpointing);
  else if (checkpointing)
    enable_activation_checkpointing(*sharded);
  GradSync sync(flat, collective);
  if (stage == 3) {  // between uses, no decoder layer or root weight holds memory
    EXPECT_FALSE(compat::storage_allocated(sharded->model->embed_tokens->weight));
    EXPECT_FALSE(compat::storage_allocated(sharded->model->layers[1]->as<model::DecoderLayerImpl>()->mlp->up_proj->weight));
  }
  flat.zero_grad();
  double loss_sum = 0;
  {
    std::optional<ShardedModel::Scope> root;
    if (shards) root.emplace(shards->gather_root());
    for (size_t j = 0; j < micro_batches.size(); ++j) {
      sync.begin_micro_batch(j + 1 == micro_batches.size());
      auto loss = loss_of(*sharded, micro_batches[j]);
      loss.backward();
      loss_sum += loss.item<double>();
    }
    sync.finish();
  }
  EXPECT_NEAR(loss_sum, reference_loss, 1e-6 * reference_loss);
  auto reference_params = reference->named_parameters();
  for (const auto& e : flat.entries()) {
    const auto want = reference_params[e.name].grad();
    ASSERT_TRUE(want.defined()) << e.name;
    const auto got = flat.grads_at(e.offset, e.numel).view(want.sizes());
    EXPECT_TRUE(torch::allclose(got, want, 1e-5, 1e-7)) << e.name << ": " << (got - want).abs().max().item<double>();
    if (stage >= 2) EXPECT_FALSE(e.param.grad().defined()) << e.name << " kept a full gradient";
  }
  if (stage == 3) {  // the owned values are the weights, and writing them back reaches the model
    auto whole = shards->gather_all(/*write_back=*/false);
    EXPECT_TRUE(sharded->lm_head_weight().equal(reference->lm_head_weight()));
    EXPECT_TRUE(sharded->model->layers[2]->as<model::DecoderLayerImpl>()->self_attn->k_proj->weight.equal(
        reference->model->layers[2]->as<model::DecoderLayerImpl>()->self_attn->k_proj->weight));
  }
}

INSTANTIATE_TEST_SUITE_P(Stages, ShardedModelOneRank,
                         ::testing::Values(Case{false, 3, false}, Case{true, 3, false}, Case{false, 3, true},
                                           Case{true, 2, false}, Case{false, 0, true}),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return std::string(info.param.tied ? "Tied" : "Untied") + "Stage" +
                                  std::to_string(info.param.zero_stage) +
                                  (info.param.checkpointing ? "Checkpointed" : "");
                         });

// gather_all with write_back: weights changed in place while gathered (GPTQ, a checkpoint
// being loaded) reach the owned segments, and the next gather shows them.
TEST(ShardedModel, WriteBackKeepsInPlaceChanges) {
  model::CausalLM m(tiny_config(false));
  model::init_weights(*m, 0.2, 3);
  MpiCollective collective;
  FlatOptions options;
  options.zero_stage = 3;
  options.unit_of = sharding_unit;
  FlatParameters flat(named(*m), options);
  ShardedModel shards(*m, flat, collective, torch::kFloat32, false);
  auto& q = m->model->layers[0]->as<model::DecoderLayerImpl>()->self_attn->q_proj->weight;
  {
    auto whole = shards.gather_all(/*write_back=*/true);
    torch::NoGradGuard no_grad;
    q.fill_(0.25);
  }
  EXPECT_FALSE(compat::storage_allocated(q));
  {
    auto whole = shards.gather_all(/*write_back=*/false);
    EXPECT_TRUE((q == 0.25).all().item<bool>());
    torch::NoGradGuard no_grad;
    q.fill_(-1.0);  // not written back
  }
  auto whole = shards.gather_all(false);
  EXPECT_TRUE((q == 0.25).all().item<bool>());
}

// One micro-batch on CUDA: the root gathered, under bf16 autocast, the gradients into the
// owned storage; returns the loss.
double bf16_sharded_backward(model::CausalLMImpl& m, ShardedModel& shards, GradSync& sync, const torch::Tensor& ids) {
  auto root = shards.gather_root();
  compat::AutocastGuard autocast(ids.device(), torch::kBFloat16);
  sync.begin_micro_batch(true);
  auto loss = loss_of(m, ids);
  loss.backward();
  sync.finish();
  return loss.item<double>();
}

// On CUDA the units are gathered in bf16 (the compute dtype), so the weights that backward
// keeps are the gathered ones; against the plain fp32 model under bf16 autocast the loss and
// gradients agree to bf16 rounding (the NCCL collectives are no-ops on one GPU; the buffers'
// release and re-allocation, and the caching allocator's streams, are what is tested).
TEST(ShardedModel, OnCudaInBf16MatchesTheAutocastModel) {
  if (!compat::cuda_available()) GTEST_SKIP() << "no CUDA device";
  const torch::Device cuda(torch::kCUDA, 0);
  model::CausalLM reference(tiny_config(false)), sharded(tiny_config(false));
  model::init_weights(*reference, 0.2, 11);
  {
    torch::NoGradGuard no_grad;
    auto from = reference->named_parameters();
    for (auto& item : sharded->named_parameters()) item.value().copy_(from[item.key()]);
  }
  reference->to(cuda);
  sharded->to(cuda);
  torch::manual_seed(5);
  const auto ids = torch::randint(0, 40, {2, 9}).to(cuda);
  double want = 0;
  {
    compat::AutocastGuard autocast(cuda, torch::kBFloat16);
    auto loss = loss_of(*reference, ids);
    loss.backward();
    want = loss.item<double>();
  }
  auto collective = make_collective(cuda);
  FlatOptions options;
  options.zero_stage = 3;
  options.unit_of = sharding_unit;
  FlatParameters flat(named(*sharded), options);
  ShardedModel shards(*sharded, flat, *collective, torch::kBFloat16, /*activation_checkpointing=*/false);
  GradSync sync(flat, *collective);
  EXPECT_EQ(sharded->model->norm->weight.scalar_type(), torch::kBFloat16);
  flat.zero_grad();
  const double got = bf16_sharded_backward(*sharded, shards, sync, ids);
  EXPECT_NEAR(got, want, 2e-2 * want);
  auto reference_params = reference->named_parameters();
  for (const auto& e : flat.entries()) {
    const auto w = reference_params[e.name].grad().to(torch::kFloat32);
    const auto g = flat.grads_at(e.offset, e.numel).view(w.sizes());
    EXPECT_LT(((g - w).norm() / w.norm()).item<double>(), 5e-2) << e.name;
  }
}

// ZeRO-Offload on CUDA (FlatOptions::offload): the owned fp32 values, gradients and AdamW
// moments live in pinned host memory and the update runs on the CPU; the gathers copy the
// shard up, the reduce-scattered gradients come down. Two steps give the losses and weights
// of the same job without offload, to the last bits of the CPU's and the GPU's AdamW.
TEST(ShardedModel, OnCudaOffloadMatchesTheDeviceOptimizer) {
  if (!compat::cuda_available()) GTEST_SKIP() << "no CUDA device";
  const torch::Device cuda(torch::kCUDA, 0);
  torch::manual_seed(5);
  const auto ids = torch::randint(0, 40, {2, 9}).to(cuda);
  auto train = [&](bool offload) {
    model::CausalLM m(tiny_config(false));
    model::init_weights(*m, 0.2, 11);
    m->to(cuda);
    auto collective = make_collective(cuda);
    FlatOptions options;
    options.zero_stage = 3;
    options.unit_of = sharding_unit;
    options.offload = offload;
    FlatParameters flat(named(*m), options);
    EXPECT_EQ(flat.storage_device().is_cpu(), offload);
    EXPECT_EQ(flat.values().is_pinned(), offload);
    ShardedModel shards(*m, flat, *collective, torch::kBFloat16, /*activation_checkpointing=*/false);
    GradSync sync(flat, *collective);
    AdamW optimizer(flat, {0.9, 0.95, 1e-8, 0.1});
    std::vector<double> losses;
    for (int step = 0; step < 3; ++step) {
      flat.zero_grad();
      losses.push_back(bf16_sharded_backward(*m, shards, sync, ids));
      optimizer.step(1e-2);
    }
    return std::make_pair(losses, flat.values().to(torch::kCPU));
  };
  const auto [device_losses, device_values] = train(false);
  const auto [host_losses, host_values] = train(true);
  for (size_t i = 0; i < device_losses.size(); ++i) EXPECT_NEAR(host_losses[i], device_losses[i], 1e-5 * device_losses[i]) << i;
  EXPECT_LT((host_values - device_values).abs().max().item<double>(), 1e-5);
  EXPECT_LT(device_losses[2], device_losses[0]);  // it trained
}

}  // namespace
}  // namespace qtrain::trainer
