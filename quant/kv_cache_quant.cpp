// KV-cache fake quantization through the shared arithmetic.
#include "quant/kv_cache_quant.h"

#include "common/dist.h"
#include "common/error.h"
#include "quant/quant_math.h"

namespace qtrain::quant {

namespace {

QuantArgs int8_args(Strategy strategy, bool dynamic) {
  QuantArgs a;
  a.strategy = strategy;
  a.dynamic = dynamic;
  return a;
}

QuantArgs fp8_args() {
  QuantArgs a;
  a.type = "float";
  return a;
}

void reduce_max(torch::Tensor& t) {
  auto host = t.to(torch::kCPU, torch::kFloat64).contiguous();
  dist::allreduce_max(host.data_ptr<double>(), static_cast<int>(host.numel()));
  t.copy_(host);
}

}  // namespace

KvCacheQuant::KvCacheQuant(config::KvCache kind, int64_t kv_heads, int64_t head_dim) : kind_(kind) {
  QT_REQUIRE(kind_ != config::KvCache::none, "KV-cache quantization is int8 or fp8");
  key_scale = register_buffer("key_scale", kind_ == config::KvCache::int8 ? torch::ones({kv_heads, head_dim}) : torch::ones({1}));
  value_scale = register_buffer("value_scale", torch::ones({1}));
  frozen = register_buffer("frozen", torch::zeros({}, torch::kBool));
}

void KvCacheQuant::begin_observing() {
  observing_ = true;
  key_absmax_ = torch::zeros_like(key_scale);
  value_absmax_ = torch::zeros_like(value_scale);
}

void KvCacheQuant::freeze() {
  observing_ = false;
  torch::NoGradGuard no_grad;
  reduce_max(key_absmax_);
  reduce_max(value_absmax_);
  // Symmetric scales through the shared formula: absmax / ((qmax - qmin) / 2).
  const auto key_args = kind_ == config::KvCache::int8 ? int8_args(Strategy::channel, false) : fp8_args();
  auto kq = qparams_from_minmax(-key_absmax_.reshape({-1, 1}), key_absmax_.reshape({-1, 1}), key_args, torch::kFloat32);
  key_scale.copy_(kq.scale.reshape(key_scale.sizes()));
  if (kind_ == config::KvCache::fp8) {
    auto vq = qparams_from_minmax(-value_absmax_.reshape({1, 1}), value_absmax_.reshape({1, 1}), fp8_args(), torch::kFloat32);
    value_scale.copy_(vq.scale.reshape({1}));
  }
  frozen.fill_(true);
}

std::pair<torch::Tensor, torch::Tensor> KvCacheQuant::forward(const torch::Tensor& k, const torch::Tensor& v) {
  if (observing_) {
    torch::NoGradGuard no_grad;
    if (kind_ == config::KvCache::int8)  // per (kv head, channel): max over batch and positions
      key_absmax_ = torch::maximum(key_absmax_, k.detach().abs().to(torch::kFloat32).amax({0, 2}));
    else
      key_absmax_ = torch::maximum(key_absmax_, k.detach().abs().to(torch::kFloat32).max().reshape({1}));
    value_absmax_ = torch::maximum(value_absmax_, v.detach().abs().to(torch::kFloat32).max().reshape({1}));
    return {k, v};
  }
  if (kind_ == config::KvCache::fp8) {
    const auto a = fp8_args();
    QParams kq{key_scale.reshape({1, 1}), torch::zeros({1, 1}, key_scale.options())};
    QParams vq{value_scale.reshape({1, 1}), torch::zeros({1, 1}, value_scale.options())};
    return {fake_quantize(k, kq, a), fake_quantize(v, vq, a)};
  }
  // int8: keys [b, h, s, d] with a scale per (h, d): move (h, d) to the unit axis.
  const auto b = k.size(0), h = k.size(1), s = k.size(2), d = k.size(3);
  auto k_units = k.permute({1, 3, 0, 2}).reshape({h * d, b * s});
  QParams kq{key_scale.reshape({h * d, 1}), torch::zeros({h * d, 1}, key_scale.options())};
  auto k_out = fake_quantize(k_units, kq, int8_args(Strategy::channel, false)).reshape({h, d, b, s}).permute({2, 0, 3, 1});
  // values: per token (and kv head), dynamic.
  const auto v_args = int8_args(Strategy::token, true);
  auto v_out = fake_quantize(v, compute_qparams(v, v_args, torch::kFloat32), v_args);
  return {k_out.contiguous(), v_out};
}

void attach_kv_cache_quant(model::CausalLMImpl& model, config::KvCache kind) {
  if (kind == config::KvCache::none) return;
  const auto& c = model.config();
  for (const auto& layer : *model.model->layers) {
    auto& attn = *layer->as<model::DecoderLayerImpl>()->self_attn;
    auto hook = std::make_shared<KvCacheQuant>(kind, attn.k_proj->weight.size(0) / c.head_dim, c.head_dim);
    hook->to(attn.k_proj->weight.device());
    attn.set_kv_cache_hook(hook);
  }
}

std::vector<KvCacheQuant*> kv_cache_quantizers(model::CausalLMImpl& model) {
  std::vector<KvCacheQuant*> out;
  for (const auto& layer : *model.model->layers) {
    auto& attn = *layer->as<model::DecoderLayerImpl>()->self_attn;
    if (auto* q = dynamic_cast<KvCacheQuant*>(attn.kv_cache_hook().get())) out.push_back(q);
  }
  return out;
}

}  // namespace qtrain::quant
