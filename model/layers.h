// The building blocks of the decoder: Linear (with an extension point that quant/ and
// prune/ use to wrap it), RMSNorm, the SwiGLU MLP and grouped-query attention.
// Parameter names follow Hugging Face (q_proj.weight, input_layernorm.weight, ...).
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>

#include "model/kv_cache.h"
#include "model/model_config.h"

namespace qtrain::model {

// While a Skeleton lives, the parameters that this file's modules create have their shapes,
// dtype and device but no memory (their storage released, compat::release_storage): a model
// larger than one device is built so, its parameters are bound to gather buffers
// (trainer/sharded_model.h), and their values are streamed into each rank's shard. Reading
// such a parameter is a bug; materialised() tells them apart. One per thread, not nested.
class Skeleton {
 public:
  explicit Skeleton(torch::TensorOptions options);
  ~Skeleton();
  Skeleton(const Skeleton&) = delete;
  Skeleton& operator=(const Skeleton&) = delete;
};
bool materialised(const torch::Tensor& tensor);  // has memory (or no elements)

class LinearImpl;

// Something that takes over a linear's forward (fake quantization, pruning masks). It is
// registered as a submodule of the linear, so its parameters and buffers are part of the
// model's state. The model itself knows nothing about what it does.
class LinearWrapper : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(LinearImpl& linear, const torch::Tensor& x) = 0;
};

class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features, bool bias);
  torch::Tensor forward(const torch::Tensor& x);
  // The plain affine map, for wrappers: x W^T + b with the given (possibly transformed) weight.
  torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight) const;
  void set_wrapper(const std::string& name, std::shared_ptr<LinearWrapper> wrapper);
  const std::shared_ptr<LinearWrapper>& wrapper() const { return wrapper_; }
  torch::Tensor weight;  // [out_features, in_features]
  torch::Tensor bias;    // [out_features] or undefined

 private:
  friend class ObserveInputs;
  std::shared_ptr<LinearWrapper> wrapper_;
  std::function<void(const torch::Tensor&)> observer_;
};
TORCH_MODULE(Linear);

// The one way to watch a linear's inputs (GPTQ's Hessians, AWQ's and SmoothQuant's channel
// statistics, pruning importance): for as long as the guard lives, each watched linear calls
// its function with every input before its forward, before any wrapper, whatever the wrapper
// does with it. The watch ends with the guard, also when a forward throws. A linear has at
// most one watcher at a time.
class ObserveInputs {
 public:
  ObserveInputs() = default;
  ~ObserveInputs();
  ObserveInputs(const ObserveInputs&) = delete;
  ObserveInputs& operator=(const ObserveInputs&) = delete;
  void watch(LinearImpl& linear, std::function<void(const torch::Tensor&)> observer);

 private:
  std::vector<LinearImpl*> watched_;
};

// Token embedding table; unlike torch::nn::Embedding it is left uninitialised, so that
// building a large model before loading its checkpoint costs no time.
class EmbeddingImpl : public torch::nn::Module {
 public:
  EmbeddingImpl(int64_t num_embeddings, int64_t embedding_dim);
  torch::Tensor forward(const torch::Tensor& input_ids);  // [..] int64 -> [.., dim]
  torch::Tensor weight;  // [num_embeddings, embedding_dim]
};
TORCH_MODULE(Embedding);

class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps);
  // Normalises in fp32 and returns weight * x in the input dtype, as transformers does.
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
  double eps;
  // Hidden-size pruning (prune/masks.h): the mean square is taken over this many channels
  // (the kept ones; the others are zero), as in the model without the pruned ones. 0 = all.
  int64_t kept_dims = 0;
};
TORCH_MODULE(RMSNorm);

// The LibTorch forms of RMSNorm and of the SwiGLU product, the references that the fused CUDA
// kernels (model/cuda/fused_layers.h, used on CUDA unless QTRAIN_MODEL_KERNELS=torch) are tested against.
// `dims` > 0: the mean square is the sum of squares over `dims` (RMSNormImpl::kept_dims).
torch::Tensor rms_norm_reference(const torch::Tensor& x, const torch::Tensor& weight, double eps, int64_t dims = 0);
torch::Tensor swiglu_reference(const torch::Tensor& gate, const torch::Tensor& up);  // silu(gate) * up

// The names of an MLP's three linears in checkpoints: transformers' gate_proj/up_proj/
// down_proj, or Mixtral's experts' w1/w3/w2.
struct MlpNames {
  const char* gate = "gate_proj";
  const char* up = "up_proj";
  const char* down = "down_proj";
};

class MLPImpl : public torch::nn::Module {
 public:
  explicit MLPImpl(const ModelConfig& c);
  MLPImpl(int64_t hidden, int64_t intermediate, bool bias, const MlpNames& names = {});
  torch::Tensor forward(const torch::Tensor& x);  // down(silu(gate(x)) * up(x))
  Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(MLP);

// Something that transforms the keys and values that attention caches (KV-cache
// quantization), after the rotary embedding, before the product. Registered as a submodule
// ("kv_cache") so that its state is part of the model's; the model does not know what it does.
// With a KvCache the hook sees only the new positions before they are cached, so it must
// treat positions independently (per-channel static or per-token scales are).
class KvCacheHook : public torch::nn::Module {
 public:
  // k, v: [batch, kv_heads, seq, head_dim] -> the same shapes.
  virtual std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& k, const torch::Tensor& v) = 0;
};

class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(const ModelConfig& c);
  // x: [batch, seq, hidden]; cos/sin: [seq, head_dim]. Causal, no padding. With `cache`, x
  // holds the positions after the cached ones: their keys and values are appended to the
  // cache's layer `layer` and the queries attend to all cached positions.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        KvCache* cache = nullptr, int64_t layer = 0);
  void set_kv_cache_hook(std::shared_ptr<KvCacheHook> hook);
  const std::shared_ptr<KvCacheHook>& kv_cache_hook() const { return kv_hook_; }
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  RMSNorm q_norm{nullptr}, k_norm{nullptr};  // Qwen3 (ModelConfig::qk_norm); null otherwise
  int64_t num_heads, num_kv_heads, head_dim;

 private:
  std::shared_ptr<KvCacheHook> kv_hook_;
};
TORCH_MODULE(Attention);

class SparseMoeImpl;

class DecoderLayerImpl : public torch::nn::Module {
 public:
  // Layer `index` of a model of config `c`: a dense MLP, or a sparse one where
  // c.is_moe_layer(index) (model/moe.h; registered as "mlp", Mixtral's as "block_sparse_moe").
  DecoderLayerImpl(const ModelConfig& c, int64_t index);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        KvCache* cache = nullptr, int64_t layer = 0);
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  Attention self_attn{nullptr};
  MLP mlp{nullptr};                     // dense layers; null in sparse ones
  std::shared_ptr<SparseMoeImpl> moe;   // sparse layers; null in dense ones
};
TORCH_MODULE(DecoderLayer);

}  // namespace qtrain::model
