// Forward passes of the decoder blocks, numerically as in transformers' modeling_llama.py.
#include "model/layers.h"

#include <cmath>
#include <optional>

#include "common/compat.h"
#include "common/error.h"
#include "model/moe.h"
#include "model/rope.h"
#if QTRAIN_WITH_CUDA
#include "model/cuda/fused_layers.h"
#endif

namespace qtrain::model {

namespace {

thread_local std::optional<torch::TensorOptions> skeleton_options;

// A new parameter's tensor: ones, or uninitialised (weights come from a checkpoint or from
// init_weights()); without memory inside a Skeleton.
torch::Tensor new_parameter(torch::IntArrayRef sizes, bool ones) {
  if (skeleton_options) {
    auto t = torch::empty(sizes, *skeleton_options);
    compat::release_storage(t);
    return t;
  }
  return ones ? torch::ones(sizes) : torch::empty(sizes);
}

}  // namespace

Skeleton::Skeleton(torch::TensorOptions options) {
  QT_REQUIRE(!skeleton_options, "model::Skeleton nested");
  skeleton_options = options.requires_grad(false);
}

Skeleton::~Skeleton() { skeleton_options.reset(); }

bool materialised(const torch::Tensor& tensor) { return tensor.numel() == 0 || compat::storage_allocated(tensor); }

LinearImpl::LinearImpl(int64_t in_features, int64_t out_features, bool with_bias) {
  weight = register_parameter("weight", new_parameter({out_features, in_features}, false));
  if (with_bias) bias = register_parameter("bias", new_parameter({out_features}, false));
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  if (observer_) observer_(x);
  if (wrapper_) return wrapper_->forward(*this, x);
  return torch::linear(x, weight, bias);
}

torch::Tensor LinearImpl::linear(const torch::Tensor& x, const torch::Tensor& w) const {
  return torch::linear(x, w, bias);
}

ObserveInputs::~ObserveInputs() {
  for (auto* linear : watched_) linear->observer_ = nullptr;
}

void ObserveInputs::watch(LinearImpl& linear, std::function<void(const torch::Tensor&)> observer) {
  QT_REQUIRE(!linear.observer_, "a linear's inputs are watched twice at once");
  linear.observer_ = std::move(observer);
  watched_.push_back(&linear);
}

void LinearImpl::set_wrapper(const std::string& name, std::shared_ptr<LinearWrapper> wrapper) {
  wrapper_ = named_children().contains(name) ? replace_module(name, std::move(wrapper))
                                             : register_module(name, std::move(wrapper));
}

EmbeddingImpl::EmbeddingImpl(int64_t num_embeddings, int64_t embedding_dim) {
  weight = register_parameter("weight", new_parameter({num_embeddings, embedding_dim}, false));
}

torch::Tensor EmbeddingImpl::forward(const torch::Tensor& input_ids) { return torch::embedding(weight, input_ids); }

RMSNormImpl::RMSNormImpl(int64_t dim, double eps_) : eps(eps_) {
  weight = register_parameter("weight", new_parameter({dim}, true));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  const bool all_dims = kept_dims == 0 || kept_dims == weight.numel();
#if QTRAIN_WITH_CUDA
  if (all_dims && x.is_cuda() && cuda::fused_layers_allowed() && cuda::fused_rms_norm_applies(x, weight))
    return cuda::fused_rms_norm(x, weight, eps);  // one kernel (model/cuda/rms_norm_kernel.cu)
#endif
  return rms_norm_reference(x, weight, eps, all_dims ? 0 : kept_dims);
}

torch::Tensor rms_norm_reference(const torch::Tensor& x, const torch::Tensor& weight, double eps, int64_t dims) {
  auto h = x.to(torch::kFloat32);
  const auto mean_square = dims > 0 ? h.pow(2).sum(-1, /*keepdim=*/true) / static_cast<double>(dims)
                                    : h.pow(2).mean(-1, /*keepdim=*/true);
  h = h * torch::rsqrt(mean_square + eps);
  return weight * h.to(x.scalar_type());
}

torch::Tensor swiglu_reference(const torch::Tensor& gate, const torch::Tensor& up) { return torch::silu(gate) * up; }

MLPImpl::MLPImpl(const ModelConfig& c) : MLPImpl(c.hidden_size, c.intermediate_size, c.mlp_bias) {}

MLPImpl::MLPImpl(int64_t hidden, int64_t intermediate, bool bias, const MlpNames& names) {
  gate_proj = register_module(names.gate, Linear(hidden, intermediate, bias));
  up_proj = register_module(names.up, Linear(hidden, intermediate, bias));
  down_proj = register_module(names.down, Linear(intermediate, hidden, bias));
}

torch::Tensor MLPImpl::forward(const torch::Tensor& x) {
  const auto gate = gate_proj(x), up = up_proj(x);
#if QTRAIN_WITH_CUDA
  if (gate.is_cuda() && cuda::fused_layers_allowed() && cuda::fused_swiglu_applies(gate, up))
    return down_proj(cuda::fused_swiglu(gate, up));  // model/cuda/swiglu_kernel.cu
#endif
  return down_proj(swiglu_reference(gate, up));
}

AttentionImpl::AttentionImpl(const ModelConfig& c)
    : num_heads(c.num_attention_heads), num_kv_heads(c.num_key_value_heads), head_dim(c.head_dim) {
  q_proj = register_module("q_proj", Linear(c.hidden_size, num_heads * head_dim, c.qkv_bias));
  k_proj = register_module("k_proj", Linear(c.hidden_size, num_kv_heads * head_dim, c.qkv_bias));
  v_proj = register_module("v_proj", Linear(c.hidden_size, num_kv_heads * head_dim, c.qkv_bias));
  o_proj = register_module("o_proj", Linear(num_heads * head_dim, c.hidden_size, c.o_bias));
  if (c.qk_norm) {
    q_norm = register_module("q_norm", RMSNorm(head_dim, c.rms_norm_eps));
    k_norm = register_module("k_norm", RMSNorm(head_dim, c.rms_norm_eps));
  }
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                     KvCache* cache, int64_t layer) {
  const auto batch = x.size(0), seq = x.size(1);
  auto q = q_proj(x).view({batch, seq, -1, head_dim});
  auto k = k_proj(x).view({batch, seq, -1, head_dim});
  if (q_norm) {  // Qwen3: each head normalised over head_dim, before rotary
    q = q_norm(q);
    k = k_norm(k);
  }
  q = q.transpose(1, 2);
  k = k.transpose(1, 2);
  auto v = v_proj(x).view({batch, seq, -1, head_dim}).transpose(1, 2);
  q = apply_rotary(q, cos, sin);
  k = apply_rotary(k, cos, sin);
  if (kv_hook_) std::tie(k, v) = kv_hook_->forward(k, v);
  if (cache) std::tie(k, v) = cache->append(layer, k, v);  // all positions so far
  const auto kv_len = k.size(2);
  const auto groups = q.size(1) / k.size(1);  // from the tensors: pruning may remove heads
  if (groups > 1) {  // grouped-query attention: each kv head serves `groups` query heads
    k = k.unsqueeze(2).expand({batch, k.size(1), groups, kv_len, head_dim}).reshape({batch, -1, kv_len, head_dim});
    v = v.unsqueeze(2).expand({batch, v.size(1), groups, kv_len, head_dim}).reshape({batch, -1, kv_len, head_dim});
  }
  auto out = compat::causal_attention(q, k, v, 1.0 / std::sqrt(static_cast<double>(head_dim)));
  return o_proj(out.transpose(1, 2).reshape({batch, seq, -1}));
}

void AttentionImpl::set_kv_cache_hook(std::shared_ptr<KvCacheHook> hook) {
  kv_hook_ = named_children().contains("kv_cache") ? replace_module("kv_cache", std::move(hook))
                                                   : register_module("kv_cache", std::move(hook));
}

DecoderLayerImpl::DecoderLayerImpl(const ModelConfig& c, int64_t index) {
  input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  self_attn = register_module("self_attn", Attention(c));
  post_attention_layernorm = register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  if (c.is_moe_layer(index))
    moe = register_module(SparseMoeImpl::checkpoint_name(c), std::make_shared<SparseMoeImpl>(c));
  else
    mlp = register_module("mlp", MLP(c));
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                        KvCache* cache, int64_t layer) {
  auto h = x + self_attn(input_layernorm(x), cos, sin, cache, layer);
  const auto normed = post_attention_layernorm(h);
  return h + (moe ? moe->forward(normed) : mlp(normed));
}

}  // namespace qtrain::model
