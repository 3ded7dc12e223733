// Importance estimates (prune/importance.h) against direct computations: activation
// importance is the mean |h| of down_proj's input and the mean per-head norm of o_proj's
// input, computed here by running the layers by hand; taylor importance is the sum of
// |w * dL/dw| with gradients from torch::autograd::grad; and every kind ranks a unit whose
// weights were scaled up above all others. Depth: a layer made the identity scores 0 by
// cosine, and the loss importance of a layer (the model run without it) is the loss of the
// model whose layer is masked out by its weights. Experts: the mean routed contribution,
// against a dense computation (every expert on every token, the router's choice applied).
#include <gtest/gtest.h>

#include "common/error.h"
#include "data/token_file.h"
#include "model/hf_checkpoint.h"
#include "model/rope.h"
#include "config/choices.h"
#include "prune/importance.h"
#include "prune/masks.h"
#include "model/moe.h"
#include "tests/test_util.h"

namespace qtrain::prune {
namespace {

model::CausalLM fixture_model() { return model::load_causal_lm(testing::fixture("llama_gqa_llama3").string()); }

torch::Tensor batch(int64_t index) {
  auto tokens = data::TokenFile::open(testing::fixture("tokens.h5").string());
  return tokens.read(index * 2 * 33, 2 * 33).view({2, 33});
}

model::DecoderLayerImpl& layer(model::CausalLMImpl& m, int64_t i) {
  return *m.model->layers[i]->as<model::DecoderLayerImpl>();
}

double relative_error(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).abs().max() / b.abs().max()).item<double>();
}

TEST(Importance, ActivationIsTheMeanAbsoluteMlpInputAndHeadOutputNorm) {
  auto m = fixture_model();
  const auto ids = torch::cat({batch(0), batch(1)}).narrow(1, 0, 32);
  const auto scores = activation_importance(*m, [&](const std::function<void(const torch::Tensor&)>& on_batch) {
    on_batch(ids.narrow(0, 0, 2));
    on_batch(ids.narrow(0, 2, 2));
  });
  // By hand: the residual stream through each layer, the MLP's h = silu(gate(n)) * up(n).
  torch::NoGradGuard no_grad;
  const auto& c = m->config();
  model::RotaryEmbedding rope(c.rope, c.head_dim);
  auto [cos, sin] = rope.cos_sin(32, 0, torch::kCPU, torch::kFloat32);
  auto x = m->model->embed_tokens(ids);
  for (int64_t i = 0; i < 2; ++i) {
    auto& l = layer(*m, i);
    // o_proj's input: attention with o_proj replaced by the identity (hidden = heads x head_dim = 64).
    const auto o_weight = l.self_attn->o_proj->weight.clone();
    l.self_attn->o_proj->weight.copy_(torch::eye(64));
    const auto heads_out = l.self_attn->forward(l.input_layernorm(x), cos, sin);
    l.self_attn->o_proj->weight.copy_(o_weight);
    const auto head_norms = heads_out.reshape({-1, 4, 16}).norm(2, -1).to(torch::kFloat64).mean(0);
    const auto expected_groups = head_norms.reshape({2, 2}).sum(1);
    const auto r = x + l.self_attn->forward(l.input_layernorm(x), cos, sin);
    const auto n = l.post_attention_layernorm(r);
    const auto h = torch::silu(l.mlp->gate_proj(n)) * l.mlp->up_proj(n);
    const auto expected_channels = h.abs().reshape({-1, 96}).to(torch::kFloat64).mean(0);
    EXPECT_LT(relative_error(scores.mlp_channels[i], expected_channels), 1e-6) << "layer " << i;
    EXPECT_LT(relative_error(scores.kv_groups[i], expected_groups), 1e-6) << "layer " << i;
    x = l.forward(x, cos, sin);
  }
}

torch::Tensor loss_of(model::CausalLMImpl& m, const torch::Tensor& window) {
  const auto logits = m.forward(window.narrow(1, 0, 32));
  return torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}),
                                              window.narrow(1, 1, 32).reshape({-1}));
}

TEST(Importance, TaylorIsTheSumOfAbsoluteWeightTimesGradient) {
  auto m = fixture_model();
  const auto scores = taylor_importance(*m, [&](const std::function<void()>& after_batch) {
    for (int64_t b = 0; b < 2; ++b) {
      m->zero_grad();
      loss_of(*m, batch(b)).backward();
      after_batch();
    }
  });
  // By hand, for layer 1: gradients of each batch's loss by autograd::grad, |w * g| summed
  // over channel j's gate row, up row and down column, and over group g's q rows (its two
  // query heads), k and v rows and o columns; then over the batches.
  auto& l = layer(*m, 1);
  auto& mlp = *l.mlp;
  auto& attn = *l.self_attn;
  const std::vector<torch::Tensor> weights = {mlp.gate_proj->weight, mlp.up_proj->weight, mlp.down_proj->weight,
                                              attn.q_proj->weight,   attn.k_proj->weight, attn.v_proj->weight,
                                              attn.o_proj->weight};
  auto channels = torch::zeros({96}, torch::kFloat64), groups = torch::zeros({2}, torch::kFloat64);
  for (int64_t b = 0; b < 2; ++b) {
    const auto g = torch::autograd::grad({loss_of(*m, batch(b))}, weights);
    std::vector<torch::Tensor> s;
    for (size_t k = 0; k < weights.size(); ++k) s.push_back((weights[k].detach() * g[k]).abs().to(torch::kFloat64));
    channels += s[0].sum(1) + s[1].sum(1) + s[2].sum(0);
    for (int64_t group = 0; group < 2; ++group)
      groups[group] += s[3].slice(0, 32 * group, 32 * (group + 1)).sum() + s[4].slice(0, 16 * group, 16 * (group + 1)).sum() +
                       s[5].slice(0, 16 * group, 16 * (group + 1)).sum() + s[6].slice(1, 32 * group, 32 * (group + 1)).sum();
  }
  EXPECT_LT(relative_error(scores.mlp_channels[1], channels), 1e-6);
  EXPECT_LT(relative_error(scores.kv_groups[1], groups), 1e-6);
  EXPECT_GT(channels.min().item<double>(), 0.0);  // a real gradient reached every channel
}

// Scales MLP channel 17 and KV group 1 of layer 0 up by 4.
void scale_units(model::CausalLMImpl& m) {
  torch::NoGradGuard no_grad;
  auto& l = layer(m, 0);
  l.mlp->gate_proj->weight[17].mul_(4);
  l.mlp->up_proj->weight[17].mul_(4);
  l.mlp->down_proj->weight.select(1, 17).mul_(4);
  l.self_attn->q_proj->weight.slice(0, 32, 64).mul_(4);
  l.self_attn->k_proj->weight.slice(0, 16, 32).mul_(4);
  l.self_attn->v_proj->weight.slice(0, 16, 32).mul_(4);
  l.self_attn->o_proj->weight.slice(1, 32, 64).mul_(4);
}

TEST(Importance, EveryKindRanksAScaledUpUnitFirst) {
  for (const auto kind : {config::Importance::activation, config::Importance::taylor, config::Importance::magnitude}) {
    SCOPED_TRACE(config::name_of(kind));
    auto m = fixture_model();
    const auto before = magnitude_importance(*m);
    scale_units(*m);
    Importance scores;
    switch (kind) {
      case config::Importance::magnitude: scores = magnitude_importance(*m); break;
      case config::Importance::activation:
        scores = activation_importance(*m, [&](const std::function<void(const torch::Tensor&)>& on_batch) {
          on_batch(batch(0).narrow(1, 0, 32));
        });
        break;
      case config::Importance::taylor:
        scores = taylor_importance(*m, [&](const std::function<void()>& after_batch) {
          m->zero_grad();
          loss_of(*m, batch(0)).backward();
          after_batch();
        });
        break;
    }
    EXPECT_EQ(scores.mlp_channels[0].argmax().item<int64_t>(), 17);
    EXPECT_EQ(scores.kv_groups[0].argmax().item<int64_t>(), 1);
    if (kind == config::Importance::magnitude)  // the norm of a unit scaled by 4 is 4 times its norm
      EXPECT_NEAR(scores.mlp_channels[0][17].item<double>(), 4 * before.mlp_channels[0][17].item<double>(), 1e-9);
  }
}


ForwardPasses batches_of(const torch::Tensor& ids) {
  return [ids](const std::function<void(const torch::Tensor&)>& on_batch) {
    on_batch(ids.narrow(0, 0, 1));
    on_batch(ids.narrow(0, 1, 1));
  };
}

double mean_loss(model::CausalLMImpl& m, const torch::Tensor& windows) {
  torch::NoGradGuard no_grad;
  const auto logits = m.forward(windows.narrow(1, 0, 32));
  return torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}),
                                              windows.narrow(1, 1, 32).reshape({-1}))
      .item<double>();
}

TEST(Importance, LayersByCosineAndByTheLossWithoutThem) {
  auto m = fixture_model();
  const auto windows = batch(0);
  {  // layer 1 made the identity: o_proj and down_proj at zero
    torch::NoGradGuard no_grad;
    auto& l1 = *m->model->layers[1]->as<model::DecoderLayerImpl>();
    l1.self_attn->o_proj->weight.zero_();
    l1.mlp->down_proj->weight.zero_();
  }
  const auto cosine = cosine_layer_importance(*m, batches_of(windows.narrow(1, 0, 32)));
  ASSERT_EQ(cosine.numel(), 2);
  EXPECT_NEAR(cosine[1].item<double>(), 0.0, 1e-6);
  EXPECT_GT(cosine[0].item<double>(), 1e-3);
  const auto candidates = torch::ones({2}, torch::kBool);
  const auto loss = loss_layer_importance(*m, candidates, [&] { return std::pair{mean_loss(*m, windows), 64.0}; });
  const double full = mean_loss(*m, windows);
  EXPECT_NEAR(loss[1].item<double>(), full, 1e-6 * full);  // without an identity layer: the same model
  EXPECT_EQ(m->skipped_layer, -1);
  // Without layer 0: as the model whose layer 0 is masked out by the depth mask.
  auto masked = fixture_model();
  {
    torch::NoGradGuard no_grad;
    auto& l1 = *masked->model->layers[1]->as<model::DecoderLayerImpl>();
    l1.self_attn->o_proj->weight.zero_();
    l1.mlp->down_proj->weight.zero_();
  }
  StructuredMasks masks(masked->config(), torch::kCPU);
  masks->depth[0] = false;
  apply_masks(*masked, *masks);
  const double without_0 = mean_loss(*masked, windows);
  EXPECT_NEAR(loss[0].item<double>(), without_0, 1e-6 * without_0);
  EXPECT_GT(std::abs(without_0 - full), 1e-3 * full);
  // A layer outside the candidates is not measured and stays.
  const auto some = loss_layer_importance(*m, torch::tensor({true, false}), [&] {
    return std::pair{mean_loss(*m, windows), 64.0};
  });
  EXPECT_TRUE(std::isinf(some[1].item<double>()));
}

TEST(Importance, AnExpertsActivationIsItsMeanRoutedContribution) {
  auto m = model::load_causal_lm(testing::fixture("qwen3_moe").string());
  const auto ids = batch(0).narrow(1, 0, 32);
  // The sparse layer 0's input, observed at its router.
  std::vector<torch::Tensor> inputs;
  auto* moe = m->model->layers[0]->as<model::DecoderLayerImpl>()->moe.get();
  {
    model::ObserveInputs observe;
    observe.watch(*moe->gate, [&](const torch::Tensor& x) { inputs.push_back(x.detach().reshape({-1, x.size(-1)})); });
    torch::NoGradGuard no_grad;
    m->hidden_states(ids.narrow(0, 0, 1));
    m->hidden_states(ids.narrow(0, 1, 1));
  }
  const auto x = torch::cat(inputs);
  // Dense: every expert on every token, weighted by the renormalised top-2 probability.
  torch::NoGradGuard no_grad;
  const auto p = torch::softmax(moe->gate->forward(x), -1);
  auto [top, chosen] = p.topk(2, -1);
  top = top / top.sum(-1, true);
  auto expected = torch::zeros({4}, torch::kFloat64);
  for (int64_t e = 0; e < 4; ++e) {
    const auto weight = (top * chosen.eq(e)).sum(-1);  // 0 where e is not chosen
    const auto norm = moe->experts[e]->forward(x).norm(2, -1);
    expected[e] = (weight * norm).sum().item<double>() / static_cast<double>(x.size(0));
  }
  const auto scores = activation_importance(*m, batches_of(ids));
  ASSERT_TRUE(scores.experts[0].defined());
  EXPECT_FALSE(scores.experts[1].defined());  // layer 1 is dense
  EXPECT_LT(((scores.experts[0] - expected).abs().max() / expected.abs().max()).item<double>(), 1e-5)
      << scores.experts[0] << expected;
  EXPECT_EQ(scores.hidden.numel(), 64);
  EXPECT_GT(scores.hidden.min().item<double>(), 0.0);
  // Magnitude: an expert whose weights are scaled up ranks first.
  moe->experts[2]->down_proj->weight.mul_(10);
  EXPECT_EQ(magnitude_importance(*m).experts[0].argmax().item<int64_t>(), 2);
}

TEST(Importance, HiddenChannelsBoostedInEveryNormRankFirst) {
  for (const auto kind : {config::Importance::activation, config::Importance::magnitude}) {
    SCOPED_TRACE(config::name_of(kind));
    auto m = fixture_model();
    {
      torch::NoGradGuard no_grad;
      for (auto& p : m->named_parameters())
        if (p.key().find("norm.weight") != std::string::npos) p.value()[37].mul_(10);
    }
    const auto scores = kind == config::Importance::magnitude
                            ? magnitude_importance(*m)
                            : activation_importance(*m, batches_of(batch(0).narrow(1, 0, 32)));
    EXPECT_EQ(scores.hidden.argmax().item<int64_t>(), 37);
  }
}

}  // namespace
}  // namespace qtrain::prune
