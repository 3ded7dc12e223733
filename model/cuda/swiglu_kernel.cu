// Fused SwiGLU product silu(gate) * up: one pass forward (reads gate and up, writes out), one
// backward (reads the gradient, gate and up; writes both gradients), where the LibTorch form
// runs silu, the product and their backward separately and keeps silu(gate) for backward.
// Arithmetic is ATen's, operation for operation: silu(g) = g / (1 + exp(-g)) in fp32, rounded
// to the dtype, then the product rounded; backward dy * sigmoid * (1 + g * (1 - sigmoid)) on the
// rounded dy * up. Contraction into FMAs may differ from ATen's build, so results agree to one
// rounding step (tests/model/test_fused_layers.cpp).
#include "common/cuda/element.cuh"
#include "model/cuda/kernels.h"

namespace qtrain::model::cuda {

namespace {

using namespace qtrain::cuda;

constexpr int kThreads = 256;

template <typename T, int VEC>
__global__ void forward_kernel(const T* __restrict__ gate, const T* __restrict__ up, T* __restrict__ out,
                               int64_t packs) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; i < packs;
       i += static_cast<int64_t>(gridDim.x) * kThreads) {
    const auto g = reinterpret_cast<const Pack<T, VEC>*>(gate)[i];
    const auto u = reinterpret_cast<const Pack<T, VEC>*>(up)[i];
    Pack<T, VEC> o;
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const float x = to_float(g.v[k]);
      const float silu = round_to<T>(x / (1.0f + expf(-x)));
      o.v[k] = from_float<T>(silu * to_float(u.v[k]));
    }
    reinterpret_cast<Pack<T, VEC>*>(out)[i] = o;
  }
}

template <typename T, int VEC>
__global__ void backward_kernel(const T* __restrict__ grad_out, const T* __restrict__ gate, const T* __restrict__ up,
                                T* __restrict__ grad_gate, T* __restrict__ grad_up, int64_t packs) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; i < packs;
       i += static_cast<int64_t>(gridDim.x) * kThreads) {
    const auto dy = reinterpret_cast<const Pack<T, VEC>*>(grad_out)[i];
    const auto g = reinterpret_cast<const Pack<T, VEC>*>(gate)[i];
    const auto u = reinterpret_cast<const Pack<T, VEC>*>(up)[i];
    Pack<T, VEC> gg, gu;
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const float x = to_float(g.v[k]), d = to_float(dy.v[k]);
      const float sigmoid = 1.0f / (1.0f + expf(-x));
      const float silu = round_to<T>(x / (1.0f + expf(-x)));
      gu.v[k] = from_float<T>(d * silu);
      const float d_silu = round_to<T>(d * to_float(u.v[k]));
      gg.v[k] = from_float<T>(d_silu * sigmoid * (1.0f + x * (1.0f - sigmoid)));
    }
    reinterpret_cast<Pack<T, VEC>*>(grad_gate)[i] = gg;
    reinterpret_cast<Pack<T, VEC>*>(grad_up)[i] = gu;
  }
}

int blocks_for(int64_t packs) {
  return static_cast<int>(std::min<int64_t>((packs + kThreads - 1) / kThreads, 132 * 16));
}

}  // namespace

void swiglu_forward(DType type, int64_t n, const void* gate, const void* up, void* out, void* stream) {
  if (n == 0) return;
  dispatch(type, [&](auto tag) {
    using T = decltype(tag);
    constexpr int kVec = 16 / sizeof(T);
    auto s = static_cast<cudaStream_t>(stream);
    const auto* g = static_cast<const T*>(gate);
    const auto* u = static_cast<const T*>(up);
    auto* o = static_cast<T*>(out);
    if (n % kVec == 0 && aligned16(gate) && aligned16(up) && aligned16(out))
      forward_kernel<T, kVec><<<blocks_for(n / kVec), kThreads, 0, s>>>(g, u, o, n / kVec);
    else
      forward_kernel<T, 1><<<blocks_for(n), kThreads, 0, s>>>(g, u, o, n);
  });
  check_launch("swiglu_forward");
}

void swiglu_backward(DType type, int64_t n, const void* grad_out, const void* gate, const void* up, void* grad_gate,
                     void* grad_up, void* stream) {
  if (n == 0) return;
  dispatch(type, [&](auto tag) {
    using T = decltype(tag);
    constexpr int kVec = 16 / sizeof(T);
    auto s = static_cast<cudaStream_t>(stream);
    const auto* dy = static_cast<const T*>(grad_out);
    const auto* g = static_cast<const T*>(gate);
    const auto* u = static_cast<const T*>(up);
    auto* gg = static_cast<T*>(grad_gate);
    auto* gu = static_cast<T*>(grad_up);
    if (n % kVec == 0 && aligned16(grad_out) && aligned16(gate) && aligned16(up) && aligned16(grad_gate) &&
        aligned16(grad_up))
      backward_kernel<T, kVec><<<blocks_for(n / kVec), kThreads, 0, s>>>(dy, g, u, gg, gu, n / kVec);
    else
      backward_kernel<T, 1><<<blocks_for(n), kThreads, 0, s>>>(dy, g, u, gg, gu, n);
  });
  check_launch("swiglu_backward");
}

}  // namespace qtrain::model::cuda
