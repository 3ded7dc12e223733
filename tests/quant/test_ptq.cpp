// PTQ methods by their defining properties: GPTQ equals round-to-nearest when the inputs are
// uncorrelated (diagonal Hessian) and beats it on correlated inputs; its output lies on the
// grid of the scales it reports; SmoothQuant/AWQ scaling leaves the float model unchanged and
// AWQ never does worse than plain rounding (its grid includes s = 1).
#include <gtest/gtest.h>

#include "model/hf_checkpoint.h"
#include "quant/awq.h"
#include "quant/gptq.h"
#include "quant/quantized_model.h"
#include "quant/smoothing.h"
#include "tests/test_util.h"

namespace qtrain::quant {
namespace {

double output_error(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& q) {
  return (x.matmul(w.t()) - x.matmul(q.t())).pow(2).sum().item<double>();
}

torch::Tensor rtn(const torch::Tensor& w, const QuantArgs& args) {
  auto qp = compute_qparams(w, args, torch::kFloat32);
  return from_unit_view(dequantize(quantize(unit_view(w, args), qp, args), qp), w.sizes(), args);
}

TEST(Gptq, EqualsRoundToNearestForADiagonalHessian) {
  torch::manual_seed(0);
  auto w = torch::randn({16, 64});
  auto args = preset_scheme("w4a16-g16").weights.value();
  auto h = torch::diag(torch::rand({64}) + 0.5);
  for (bool act_order : {false, true}) {
    auto r = gptq_quantize(w, h, args, {0.01, 32, act_order}, torch::kFloat32);
    EXPECT_TRUE(torch::allclose(r.weight, rtn(w, args), 0, 1e-6)) << "act_order " << act_order;
  }
}

TEST(Gptq, BeatsRoundToNearestOnCorrelatedInputsAndStaysOnItsGrid) {
  torch::manual_seed(1);
  auto w = torch::randn({32, 128});
  // Inputs with strongly correlated channels: x = z A, A mixing 16 latent factors.
  auto x = torch::randn({2048, 16}).matmul(torch::randn({16, 128})) + 0.05 * torch::randn({2048, 128});
  auto h = 2.0 * x.t().matmul(x) / x.size(0);
  for (const auto* scheme : {"w4a16-g32", "w8a16", "w4a16-g32-asym"}) {
    auto args = preset_scheme(scheme).weights.value();
    for (bool act_order : {false, true}) {
      auto r = gptq_quantize(w, h, args, {0.01, 64, act_order}, torch::kFloat32);
      const double gptq = output_error(x, w, r.weight), plain = output_error(x, w, rtn(w, args));
      EXPECT_LT(gptq, 0.7 * plain) << scheme << " act_order " << act_order;
      // The result is exactly representable with the reported scales and zero points.
      auto q = quantize(unit_view(r.weight, args), r.qparams, args);
      EXPECT_TRUE(torch::allclose(dequantize(q, r.qparams).reshape(w.sizes()), r.weight, 0, 1e-5)) << scheme;
    }
  }
}

// The FP4 and FP8 formats: NVFP4 under a global scale fixed beforehand, MXFP4's powers of two,
// FP8 blocks (rows that are not a multiple of the block: the last block padded) and w4afp8
// (static group scales, dequantized by the engine's re-encoded ones). GPTQ beats rounding to
// nearest, and its result lies exactly on the grid of the parameters it reports.
TEST(Gptq, BeatsRoundToNearestOnTheFloatFormats) {
  torch::manual_seed(2);
  auto w = torch::randn({160, 256});
  auto x = torch::randn({2048, 16}).matmul(torch::randn({16, 256})) + 0.05 * torch::randn({2048, 256});
  auto h = 2.0 * x.t().matmul(x) / x.size(0);
  for (const auto* scheme : {"nvfp4a16", "mxfp4a16", "fp8-block", "w4afp8"}) {
    auto args = preset_scheme(scheme).weights.value();
    const auto global = args.has_global_scale() ? global_scale_of(w) : torch::Tensor();
    for (bool act_order : {false, true}) {
      auto r = gptq_quantize(w, h, args, {0.01, 64, act_order}, torch::kBFloat16, global);
      auto qp = with_engine_scales(r.qparams, args, w.size(0));
      EXPECT_EQ(qp.scale.numel(), compute_qparams(w, args).scale.numel()) << scheme;
      // The weight the fake quantization (and the engine) computes with.
      const auto used = from_unit_view(dequantize(quantize(unit_view(r.weight, args), qp, args), qp), w.sizes(), args);
      if (!args.fp8_group_scales) EXPECT_TRUE(used.equal(r.weight)) << scheme << " act_order " << act_order;
      const double gptq = output_error(x, w, used), plain = output_error(x, w, rtn(w, args));
      EXPECT_LT(gptq, 0.9 * plain) << scheme << " act_order " << act_order;
    }
  }
}

TEST(Smoothing, FoldingScalesKeepsTheFloatModel) {
  const auto dir = testing::fixture("qwen2_bias").string();
  auto plain = model::load_causal_lm(dir);
  auto wrapped = model::load_causal_lm(dir);
  attach_fake_quant(*wrapped, assign_schemes(*wrapped, parse_rules({"re:.*=w8a16"})), FakeQuantOptions{});
  auto pairs = smoothing_pairs(*wrapped);
  ASSERT_EQ(pairs.size(), 6u);  // 2 layers x (input norm, post-attention norm, up_proj)
  torch::manual_seed(2);
  for (auto& pair : pairs) apply_smoothing(pair, torch::rand({pair.consumers.front()->weight.size(1)}) + 0.5);
  // The smoothed float weights, put into a plain model, compute the same function.
  auto smoothed = model::load_causal_lm(dir);
  torch::NoGradGuard no_grad;
  auto source = wrapped->named_parameters();
  for (auto& item : smoothed->named_parameters()) item.value().copy_(source[item.key()]);
  const auto ids = torch::randint(0, 256, {1, 16});
  EXPECT_FALSE(smoothed->model->layers[0]->as<model::DecoderLayerImpl>()->input_layernorm->weight.equal(
      plain->model->layers[0]->as<model::DecoderLayerImpl>()->input_layernorm->weight));
  EXPECT_TRUE(torch::allclose(smoothed->forward(ids), plain->forward(ids), 1e-4, 1e-4));
}

// AWQ on the fixture, w4a16 in groups of 16 (min-max scales of the scaled weights): the
// float model it leaves computes the same function (the scales fold into the norms and
// up_proj), and on its calibration batches the fake-quantized model's logits are no further
// from the float model's than plain rounding's (the grid includes s = 1, and each pair keeps
// the scale of least output error). The weights did change: a search that kept s = 1 for
// every pair would pass the first two checks but not the third.
TEST(Awq, KeepsTheFloatModelAndDoesNoWorseThanRoundToNearest) {
  const auto dir = testing::fixture("qwen2_bias").string();
  auto plain = model::load_causal_lm(dir);
  auto rtn_model = model::load_causal_lm(dir);
  auto awq_model = model::load_causal_lm(dir);
  const auto rules = parse_rules({"lm_head=none", "re:.*=w4a16-g16"});
  for (auto* m : {rtn_model.get(), awq_model.get()}) attach_fake_quant(*m, assign_schemes(*m, rules), FakeQuantOptions{});
  torch::manual_seed(4);
  const auto ids = torch::randint(0, 256, {4, 32});
  run_awq(*awq_model, 20, [&] { awq_model->forward(ids); });
  torch::NoGradGuard no_grad;
  const auto reference = plain->forward(ids);
  auto smoothed = model::load_causal_lm(dir);
  auto source = awq_model->named_parameters();
  for (auto& item : smoothed->named_parameters()) item.value().copy_(source[item.key()]);
  EXPECT_TRUE(torch::allclose(smoothed->forward(ids), reference, 1e-4, 1e-4));
  EXPECT_FALSE(smoothed->model->layers[0]->as<model::DecoderLayerImpl>()->mlp->up_proj->weight.equal(
      plain->model->layers[0]->as<model::DecoderLayerImpl>()->mlp->up_proj->weight));
  const double rtn_error = (rtn_model->forward(ids) - reference).pow(2).sum().item<double>();
  const double awq_error = (awq_model->forward(ids) - reference).pow(2).sum().item<double>();
  std::printf("fake-quant logit error on the calibration batches: RTN %.6g, AWQ %.6g\n", rtn_error, awq_error);
  EXPECT_LE(awq_error, rtn_error * (1 + 1e-6));
}

}  // namespace
}  // namespace qtrain::quant
