// The tensor quantizer and its observer against closed forms computed here: per-unit
// absmax scales of the KV cache's keys (absmax / 127.5 per kv head and channel, absmax / 448
// for FP8), the running average of an ema observer, a weight that follows min-max until it
// is fixed, LSQ's scale rounded through the storage dtype, and the scoped input watch.
#include <gtest/gtest.h>

#include "common/error.h"
#include "model/layers.h"
#include "quant/fp4.h"
#include "quant/kv_cache_quant.h"
#include "quant/tensor_quantizer.h"

namespace qtrain::quant {
namespace {

// Runs `batches` through a quantizer's one calibration pass and freezes it.
void calibrate(TensorQuantizer& q, const std::vector<torch::Tensor>& batches) {
  q.begin_pass(0);
  for (const auto& x : batches) EXPECT_TRUE(q.forward(x).equal(x));  // observing passes x through
  q.end_pass();
  q.freeze();
}

TEST(TensorQuantizer, Int8KvKeysGetAbsmaxScalesPerKvHeadAndChannel) {
  torch::manual_seed(3);
  KvCacheQuant kv(config::KvCache::int8, /*kv_heads=*/2, /*head_dim=*/4);
  const auto k1 = torch::randn({3, 2, 5, 4}), k2 = torch::randn({1, 2, 7, 4}) * 2, v = torch::randn({3, 2, 5, 4});
  kv.keys().begin_pass(0);
  for (const auto& k : {k1, k2}) {
    const auto [k_out, v_out] = kv.forward(k, v);
    EXPECT_TRUE(k_out.equal(k));  // observed, not quantized
  }
  kv.keys().end_pass();
  kv.keys().freeze();
  ASSERT_TRUE(kv.frozen());
  const auto absmax = torch::maximum(k1.abs().amax({0, 2}), k2.abs().amax({0, 2}));  // [kv heads, head_dim]
  EXPECT_TRUE(torch::allclose(kv.keys().scale, absmax / 127.5, 0, 0)) << kv.keys().scale << absmax / 127.5;
  // Quantized keys: each (head, channel) on its own grid; values per token, dynamically.
  const auto [k_out, v_out] = kv.forward(k1, v);
  const auto steps = (k_out / (absmax / 127.5).view({1, 2, 1, 4}));
  EXPECT_LT((steps - steps.round()).abs().max().item<double>(), 1e-3);
  const auto v_step = v.abs().amax(-1, true) / 127.5;
  EXPECT_TRUE(torch::allclose(v_out, (v / v_step).round().clamp(-128, 127) * v_step, 1e-6, 1e-6));
}

TEST(TensorQuantizer, Fp8KvScalesAreAbsmaxOver448AndShareOneFlag) {
  torch::manual_seed(4);
  KvCacheQuant kv(config::KvCache::fp8, 2, 4);
  const auto k = torch::randn({2, 2, 6, 4}), v = torch::randn({2, 2, 6, 4}) * 3;
  for (auto* q : {&kv.keys(), &kv.values()}) q->begin_pass(0);
  kv.forward(k, v);
  for (auto* q : {&kv.keys(), &kv.values()}) {
    q->end_pass();
    q->freeze();
  }
  EXPECT_FLOAT_EQ(kv.keys().scale.item<float>(), k.abs().max().item<float>() / 448.0f);
  EXPECT_FLOAT_EQ(kv.values().scale.item<float>(), v.abs().max().item<float>() / 448.0f);
  const auto state = kv.named_buffers();
  EXPECT_EQ(state.size(), 3u);  // key_scale, value_scale, frozen
  EXPECT_TRUE(state["frozen"].item<bool>());
}

TEST(TensorQuantizer, EmaObserverAveragesTheBatchRanges) {
  QuantArgs args;  // int8 symmetric per tensor, static
  TensorQuantizerOptions options;
  options.observer.kind = config::ObserverKind::ema;
  options.observer.ema_decay = 0.75;
  options.scale_dtype = torch::kFloat32;
  auto q = TensorQuantizer::for_activation(args, options, {1, 1}, true);
  const std::vector<torch::Tensor> batches = {torch::tensor({-1.0f, 2.0f}), torch::tensor({-4.0f, 1.0f}),
                                              torch::tensor({-0.5f, 8.0f})};
  calibrate(q, batches);
  double lo = -1, hi = 2;  // the first batch starts the averages
  for (const auto& [l, h] : {std::pair{-4.0, 1.0}, std::pair{-0.5, 8.0}}) {
    lo = 0.75 * lo + 0.25 * l;
    hi = 0.75 * hi + 0.25 * h;
  }
  EXPECT_FLOAT_EQ(q.stored().scale.item<float>(), static_cast<float>(std::max(-lo, hi) / 127.5));
}

TEST(TensorQuantizer, HistogramObserversRefusePerChannelRanges) {
  QuantArgs args;
  args.strategy = Strategy::channel;
  TensorQuantizerOptions options;
  options.observer.kind = config::ObserverKind::percentile;
  auto q = TensorQuantizer::for_activation(args, options, {4, 1}, false);
  ASSERT_EQ(q.calibration_passes(), 2);
  q.begin_pass(0);
  q.forward(torch::randn({4, 8}));
  q.end_pass();
  q.begin_pass(1);
  EXPECT_THROW(q.forward(torch::randn({4, 8})), Error);
}

TEST(TensorQuantizer, StaticScalesAreRefusedBeforeCalibration) {
  auto q = TensorQuantizer::for_activation(QuantArgs{}, {}, {1, 1}, true);
  EXPECT_THROW(q.forward(torch::randn({2, 3})), c10::Error);
  auto disabled = TensorQuantizer::for_activation(std::nullopt, {}, {1, 1}, true);
  const auto x = torch::randn({2, 3});
  EXPECT_TRUE(disabled.forward(x).equal(x));
  EXPECT_EQ(disabled.calibration_passes(), 0);
}

TEST(TensorQuantizer, WeightFollowsMinMaxUntilFixed) {
  const auto args = preset_scheme("w8a16").weights.value();  // int8 per channel
  const auto w = torch::tensor({{1.0f, -2.0f}, {0.5f, 0.25f}});
  auto q = TensorQuantizer::for_weight(args, {{}, torch::kFloat32, false}, compute_qparams(w, args, torch::kFloat32));
  const auto w2 = w * 2;
  EXPECT_FLOAT_EQ(q.qparams(w2).scale[0].item<float>(), 4.0f / 127.5f);  // follows the tensor it sees
  q.set({torch::tensor({{0.5f}, {0.25f}}), torch::zeros({2, 1})});
  EXPECT_TRUE(q.is_set());
  EXPECT_FLOAT_EQ(q.qparams(w2).scale[0].item<float>(), 0.5f);  // fixed: no longer follows
  EXPECT_TRUE(q.forward(w2).equal(torch::tensor({{2.0f, -4.0f}, {1.0f, 0.5f}})));  // on the 0.5 / 0.25 grids
}

TEST(TensorQuantizer, LearnedScalesAreRoundedThroughTheStorageDtypeWithAStraightThroughGradient) {
  const auto args = preset_scheme("w4a16-g2").weights.value();
  const auto w = torch::tensor({{1.0f, -2.0f, 0.5f, 0.25f}});
  auto q = TensorQuantizer::for_weight(args, {{}, torch::kBFloat16, true}, {torch::tensor({{0.1234567f}, {0.0301f}}), torch::zeros({2, 1})});
  q.scale.set_requires_grad(true);  // what the owner's register_parameter does
  ASSERT_TRUE(q.is_set() && q.learned());
  const auto used = q.qparams(w).scale;
  EXPECT_TRUE(used.detach().equal(q.scale.detach().to(torch::kBFloat16).to(torch::kFloat32)));
  used.sum().backward();
  EXPECT_TRUE(q.scale.grad().equal(torch::ones({2, 1})));
}

// NVFP4 activations (dynamic "local"): calibration fixes the per-tensor global scale from the
// observed absmax (448 * 6 / absmax); the group scales stay dynamic, from each batch under it.
TEST(TensorQuantizer, Nvfp4ActivationsCalibrateTheGlobalScaleOnly) {
  const auto args = *preset_scheme("nvfp4").input_activations;
  auto q = TensorQuantizer::for_activation(args, {}, {1, 1}, /*store_zero_point=*/false);
  EXPECT_TRUE(q.needs_calibration());
  torch::manual_seed(4);
  const auto a = torch::randn({2, 5, 32}), b = torch::randn({3, 32}) * 3;
  calibrate(q, {a, b});
  const auto absmax = torch::maximum(a.abs().max(), b.abs().max());
  EXPECT_TRUE(q.global_scale.equal(nvfp4_global_scale(absmax)));
  const auto qp = q.qparams(a);
  EXPECT_TRUE(qp.global_scale.equal(q.global_scale));
  EXPECT_EQ(qp.scale.numel(), 2 * 5 * 32 / 16);  // one per group of 16 of this batch
  EXPECT_TRUE(qp.scale.equal(compute_qparams(a, args, torch::kFloat32, q.global_scale).scale));
}

// Learned scales: NVFP4's E4M3 group scales learn (rounded onto E4M3 in the forward, with a
// straight-through gradient); MXFP4's powers of two are refused with the config key.
TEST(TensorQuantizer, Nvfp4ScalesLearnAndMxfp4ScalesAreRefused) {
  torch::manual_seed(5);
  const auto w = torch::randn({4, 32});
  const auto nv = *preset_scheme("nvfp4a16").weights;
  TensorQuantizerOptions learn;
  learn.learnable = true;
  auto q = TensorQuantizer::for_weight(nv, learn, compute_qparams(w, nv));
  q.scale.requires_grad_(true);
  {
    torch::NoGradGuard no_grad;
    q.scale.mul_(1.01);  // off the E4M3 grid, as after an optimizer step
  }
  const auto qp = q.qparams(w);
  EXPECT_TRUE(round_to_fp8_e4m3(qp.scale.detach()).equal(qp.scale.detach()));
  q.forward(w).pow(2).sum().backward();
  ASSERT_TRUE(q.scale.grad().defined());
  EXPECT_GT(q.scale.grad().abs().sum().item<float>(), 0.0f);
  // A learned scale driven towards 0 stays at E4M3's smallest subnormal: no division by zero.
  {
    torch::NoGradGuard no_grad;
    q.scale.fill_(1e-6);
  }
  EXPECT_FLOAT_EQ(q.qparams(w).scale.min().item<float>(), std::ldexp(1.0f, -9));
  EXPECT_TRUE(torch::isfinite(q.forward(w)).all().item<bool>());
  const auto mx = *preset_scheme("mxfp4a16").weights;
  try {
    TensorQuantizer::for_weight(mx, learn, compute_qparams(w, mx));
    FAIL() << "MXFP4 scales were accepted as learnable";
  } catch (const Error& e) {
    EXPECT_EQ(e.key_name(), "quant.learnable_scales");
  }
}

TEST(ObserveInputs, WatchesUntilTheGuardEnds) {
  model::LinearImpl linear(3, 2, false);
  linear.weight.detach().copy_(torch::ones({2, 3}));
  int64_t seen = 0;
  {
    model::ObserveInputs observe;
    observe.watch(linear, [&](const torch::Tensor& x) { seen += x.size(0); });
    EXPECT_THROW(observe.watch(linear, [](const torch::Tensor&) {}), Error);  // one watcher at a time
    linear.forward(torch::ones({4, 3}));
  }
  linear.forward(torch::ones({5, 3}));
  EXPECT_EQ(seen, 4);
  model::ObserveInputs again;  // free to watch again
  again.watch(linear, [&](const torch::Tensor& x) { seen += x.size(0); });
  linear.forward(torch::ones({1, 3}));
  EXPECT_EQ(seen, 5);
}

}  // namespace
}  // namespace qtrain::quant
