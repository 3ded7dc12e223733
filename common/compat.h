// Every difference between the LibTorch versions we build against (Debian's 1.13 CPU,
// PyTorch 2.x with CUDA) lives here, behind one function each.
#pragma once
#include <torch/torch.h>

#include <optional>
#include <torch/version.h>
#if TORCH_VERSION_MAJOR >= 2
#include <ATen/autocast_mode.h>
#endif

#define QTRAIN_TORCH_2 (TORCH_VERSION_MAJOR >= 2)

namespace qtrain::compat {

// Causal attention over [batch, heads, seq, head_dim] with kv heads already expanded. With
// fewer queries than keys (decoding with a KV cache) the queries are the last positions:
// the mask is aligned to the bottom right. 2.x: the fused SDPA kernels (flash /
// memory-efficient on CUDA); SDPA's is_causal aligns top left, so it is only used for
// square masks. 1.13: the plain math form with the softmax in fp32, as transformers' eager
// attention computes it.
inline torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k,
                                      const torch::Tensor& v, double scale) {
#if QTRAIN_TORCH_2
  const auto len_q = q.size(-2), len_k = k.size(-2);
  if (len_q == len_k || len_q == 1) {  // square: causal; one query (the last): sees every key
    return at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, /*dropout_p=*/0.0,
                                            /*is_causal=*/len_q == len_k, /*scale=*/scale);
  }
  auto allowed = torch::ones({len_q, len_k}, torch::dtype(torch::kBool).device(q.device())).tril(len_k - len_q);
  return at::scaled_dot_product_attention(q, k, v, allowed, /*dropout_p=*/0.0, /*is_causal=*/false, /*scale=*/scale);
#else
  auto scores = torch::matmul(q, k.transpose(-2, -1)) * scale;
  const auto len_q = q.size(-2), len_k = k.size(-2);
  auto mask = torch::ones({len_q, len_k}, torch::dtype(torch::kBool).device(q.device()))
                  .triu(len_k - len_q + 1);
  scores = scores.masked_fill(mask, -std::numeric_limits<float>::infinity());
  auto probs = torch::softmax(scores, -1, torch::kFloat32).to(q.scalar_type());
  return torch::matmul(probs, v);
#endif
}

inline bool cuda_available() { return torch::cuda::is_available(); }

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define QTRAIN_HAS_DEVICE_AUTOCAST 1
#else
#define QTRAIN_HAS_DEVICE_AUTOCAST 0
#endif

// The dtype CUDA autocast computes matmuls in, when it is on (LibTorch >= 2.4); none otherwise.
inline std::optional<torch::ScalarType> cuda_autocast_dtype() {
#if QTRAIN_HAS_DEVICE_AUTOCAST
  if (at::autocast::is_autocast_enabled(at::kCUDA)) return at::autocast::get_autocast_dtype(at::kCUDA);
#endif
  return std::nullopt;
}

// Mixed precision for a forward pass: on CUDA with LibTorch >= 2.4, matmuls and other
// autocast-listed ops run in `dtype` (bf16) while parameters stay fp32. Elsewhere (CPU,
// LibTorch 1.13) it does nothing and the forward runs in the parameters' dtype.
class AutocastGuard {
 public:
  AutocastGuard(const torch::Device& device, torch::ScalarType dtype) {
#if QTRAIN_HAS_DEVICE_AUTOCAST
    active_ = device.is_cuda() && dtype != torch::kFloat32;
    if (!active_) return;
    previous_enabled_ = at::autocast::is_autocast_enabled(at::kCUDA);
    previous_dtype_ = at::autocast::get_autocast_dtype(at::kCUDA);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::set_autocast_dtype(at::kCUDA, dtype);
    at::autocast::increment_nesting();
#else
    (void)device;
    (void)dtype;
#endif
  }
  ~AutocastGuard() {
#if QTRAIN_HAS_DEVICE_AUTOCAST
    if (!active_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();  // drop cached bf16 weights
    at::autocast::set_autocast_enabled(at::kCUDA, previous_enabled_);
    at::autocast::set_autocast_dtype(at::kCUDA, previous_dtype_);
#endif
  }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_ = false;
  bool previous_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kBFloat16;
};

// Turns CUDA autocast off for a scope, for code that casts explicitly (the chunked KD loss
// picks its matmul dtype with cuda_autocast_dtype() first). Does nothing where AutocastGuard
// does nothing.
class AutocastOffGuard {
 public:
  AutocastOffGuard() {
#if QTRAIN_HAS_DEVICE_AUTOCAST
    previous_enabled_ = at::autocast::is_autocast_enabled(at::kCUDA);
    at::autocast::set_autocast_enabled(at::kCUDA, false);
#endif
  }
  ~AutocastOffGuard() {
#if QTRAIN_HAS_DEVICE_AUTOCAST
    at::autocast::set_autocast_enabled(at::kCUDA, previous_enabled_);
#endif
  }
  AutocastOffGuard(const AutocastOffGuard&) = delete;
  AutocastOffGuard& operator=(const AutocastOffGuard&) = delete;

 private:
  bool previous_enabled_ = false;
};

// Exact integer matrix product of int8 operands, a [m, k] x b [k, n] -> int32 [m, n]: the
// int8 tensor-core GEMM (at::_int_mm) on CUDA with LibTorch 2.x where its shape rules hold,
// else a float64 GEMM, which is exact here (|sums| <= k * 2^14 < 2^53). cuBLASLt's int8 GEMM
// takes only the "TN" layout, a row-major and b column-major (a row-major b is refused with
// CUBLAS_STATUS_NOT_SUPPORTED on H100/H200): b goes in as the transpose of a contiguous
// [n, k], which for a weight's transpose is the weight itself, not a copy.
inline torch::Tensor int8_matmul(const torch::Tensor& a, const torch::Tensor& b) {
#if QTRAIN_TORCH_2
  if (a.is_cuda() && a.size(0) > 16 && a.size(1) % 8 == 0 && b.size(1) % 8 == 0)
    return at::_int_mm(a.to(torch::kInt8).contiguous(), b.to(torch::kInt8).t().contiguous().t());
#endif
  return torch::matmul(a.to(torch::kFloat64), b.to(torch::kFloat64)).round().to(torch::kInt32);
}

// The PyTorch profiler (Kineto: CPU ops and, on CUDA, kernels and memory copies) between
// start_profiler() and stop_profiler(), which writes the Chrome trace (Perfetto,
// chrome://tracing, TensorBoard's profiler plugin). LibTorch 2.x only: on 1.13
// profiler_available() is false and start_profiler() throws. Implemented in compat.cpp, so
// that the profiler's headers stay out of this one.
bool profiler_available();
void start_profiler(bool cuda);
void stop_profiler(const std::string& chrome_trace_path);

// A tensor's memory released and given back in place (FSDP's "free/alloc storage"): the
// tensor and every view of it keep their sizes and their StorageImpl, so that autograd's saved
// references to them see whatever the storage holds again after allocate_storage. Reading
// a released tensor is a bug. The same StorageImpl calls exist in 1.13 and 2.x.
inline void release_storage(const torch::Tensor& tensor) {
  auto* storage = tensor.storage().unsafeGetStorageImpl();
  storage->set_data_ptr_noswap(at::DataPtr(nullptr, storage->device()));
  storage->set_nbytes(0);
}
inline void allocate_storage(const torch::Tensor& tensor, size_t nbytes) {
  // The caching allocator allocates on the current device: make it the tensor's (a rank
  // whose GPU is not device 0 gathers on its main thread, where nothing else sets it).
  const c10::DeviceGuard device(tensor.device());
  auto* storage = tensor.storage().unsafeGetStorageImpl();
  storage->set_data_ptr_noswap(storage->allocator()->allocate(nbytes));
  storage->set_nbytes(nbytes);
}
inline bool storage_allocated(const torch::Tensor& tensor) { return tensor.storage().nbytes() > 0; }
// The same, for a pool of blocks: take_storage releases the tensor's block and hands it
// out; put_storage gives a tensor (released) a block of `nbytes` taken earlier.
inline at::DataPtr take_storage(const torch::Tensor& tensor) {
  auto* storage = tensor.storage().unsafeGetStorageImpl();
  auto block = storage->set_data_ptr(at::DataPtr(nullptr, storage->device()));
  storage->set_nbytes(0);
  return block;
}
inline void put_storage(const torch::Tensor& tensor, at::DataPtr block, size_t nbytes) {
  auto* storage = tensor.storage().unsafeGetStorageImpl();
  storage->set_data_ptr_noswap(std::move(block));
  storage->set_nbytes(nbytes);
}

// Element types that only newer LibTorch can hold: FP8 (2.1+) and wide unsigned ints (2.3+).
// On 1.13 such tensors are read as raw bytes (see model/safetensors.h).
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define QTRAIN_HAS_FLOAT8 1
#else
#define QTRAIN_HAS_FLOAT8 0
#endif
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
#define QTRAIN_HAS_WIDE_UINT 1
#else
#define QTRAIN_HAS_WIDE_UINT 0
#endif

}  // namespace qtrain::compat
