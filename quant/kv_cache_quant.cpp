// KV-cache fake quantization through the shared arithmetic.
#include "quant/kv_cache_quant.h"

#include "common/error.h"
#include "quant/quant_math.h"

namespace qtrain::quant {

namespace {

QuantArgs key_args(config::KvCache kind) {
  QuantArgs a;
  if (kind == config::KvCache::fp8) a.type = "float";
  else a.strategy = Strategy::channel;  // units (kv head, channel): see forward
  return a;
}

QuantArgs value_args(config::KvCache kind) {
  QuantArgs a;
  if (kind == config::KvCache::fp8) {
    a.type = "float";
  } else {
    a.strategy = Strategy::token;
    a.dynamic = true;
  }
  return a;
}

// Absmax scales in fp32, as vLLM reads k_scale / v_scale.
TensorQuantizerOptions kv_options() { return {ObserverOptions{}, torch::kFloat32, false}; }

std::vector<int64_t> key_scale_shape(config::KvCache kind, int64_t kv_heads, int64_t head_dim) {
  return kind == config::KvCache::int8 ? std::vector<int64_t>{kv_heads, head_dim} : std::vector<int64_t>{1};
}

}  // namespace

KvCacheQuant::KvCacheQuant(config::KvCache kind, int64_t kv_heads, int64_t head_dim)
    : kind_(kind),
      keys_(TensorQuantizer::for_activation(key_args(kind), kv_options(), key_scale_shape(kind, kv_heads, head_dim), false)),
      values_(TensorQuantizer::for_activation(value_args(kind), kv_options(), {1}, false, keys_.flag)) {
  QT_REQUIRE(kind_ != config::KvCache::none, "KV-cache quantization is int8 or fp8");
  keys_.scale = register_buffer("key_scale", keys_.scale);
  values_.scale = register_buffer("value_scale", values_.scale);
  keys_.flag = values_.flag = register_buffer("frozen", keys_.flag);
}

std::pair<torch::Tensor, torch::Tensor> KvCacheQuant::forward(const torch::Tensor& k, const torch::Tensor& v) {
  if (kind_ == config::KvCache::fp8) return {keys_.forward(k), values_.forward(v)};
  // int8: keys [b, h, s, d] with a scale per (h, d): (h, d) moved to the unit axis.
  const auto b = k.size(0), h = k.size(1), s = k.size(2), d = k.size(3);
  const auto k_units = k.permute({1, 3, 0, 2}).reshape({h * d, b * s});
  auto k_out = keys_.forward(k_units).reshape({h, d, b, s}).permute({2, 0, 3, 1});
  return {k_out.contiguous(), values_.forward(v)};
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
