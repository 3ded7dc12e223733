// Fused fake quantization on CUDA: one pass reads x and writes x' (forward), one pass reads x
// and the incoming gradient and writes the straight-through gradient (backward). The unfused
// LibTorch form (quant_math.cpp) materializes x / scale, the clamp, the rounding and a mask in
// fp32: about ten passes over memory and 9 bytes per element kept for backward. This one keeps
// nothing but x. The arithmetic is quant_math.h's, operation for operation (IEEE division,
// round half to even), so both forms give the same bits (tests/quant/test_fused_fake_quant.cpp).
#include "quant/cuda/fake_quant_kernel.h"

#include <algorithm>

#include "common/cuda/element.cuh"

namespace qtrain::quant::cuda {

namespace {

using namespace qtrain::cuda;

// quant_math.cpp's round_to_fp8_e4m3: step 2^(floor(log2 max(|c|, 2^-6)) - 3); fp4.cpp's
// round_to_fp4_e2m1: step 0.5 below 2, 1 below 4, 2 above, the quotient rounded half to even
// (the divisions and products are exact).
__device__ __forceinline__ float round_to_grid(float clamped, ValueGrid grid) {
  if (grid == ValueGrid::integer) return rintf(clamped);
  if (grid == ValueGrid::fp4_e2m1) {
    const float a = fabsf(clamped);
    const float step = a < 2.0f ? 0.5f : (a < 4.0f ? 1.0f : 2.0f);
    const float r = rintf(a / step) * step;
    return clamped < 0.0f ? -r : r;
  }
  int exponent;
  frexpf(fmaxf(fabsf(clamped), 0.015625f), &exponent);  // m = f * 2^exponent, f in [0.5, 1)
  const float step = ldexpf(1.0f, exponent - 1 - 3);
  return rintf(clamped / step) * step;
}

// x' is stored in TOut: x's own type, or bf16/fp16 straight from fp32 master weights under
// autocast (the cast the matmul would make anyway, fused in).
template <typename T, typename TOut, int VEC>
__global__ void forward_kernel(const T* __restrict__ x, TOut* __restrict__ out, const float* __restrict__ scale,
                               const float* __restrict__ zero_point, const float* __restrict__ dequant_scale,
                               int64_t packs, int64_t unit_len, float qmin, float qmax, ValueGrid grid) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < packs;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t unit = i * VEC / unit_len;  // a pack never straddles two units
    const float s = scale[unit], z = zero_point[unit];
    const float d = dequant_scale ? dequant_scale[unit] : s;
    const auto in = reinterpret_cast<const Pack<T, VEC>*>(x)[i];
    Pack<TOut, VEC> result;
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const float v = to_float(in.v[k]) / s + z;
      const float q = round_to_grid(fminf(fmaxf(v, qmin), qmax), grid);
      result.v[k] = from_float<TOut>((q - z) * d);
    }
    reinterpret_cast<Pack<TOut, VEC>*>(out)[i] = result;
  }
}

template <typename T, typename TOut, int VEC>
__global__ void backward_kernel(const T* __restrict__ x, const TOut* __restrict__ grad_out, T* __restrict__ grad_x,
                                const float* __restrict__ scale, const float* __restrict__ zero_point, int64_t packs,
                                int64_t unit_len, float qmin, float qmax) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < packs;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t unit = i * VEC / unit_len;
    const float s = scale[unit], z = zero_point[unit];
    const auto in = reinterpret_cast<const Pack<T, VEC>*>(x)[i];
    const auto g = reinterpret_cast<const Pack<TOut, VEC>*>(grad_out)[i];
    Pack<T, VEC> result;
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const float v = to_float(in.v[k]) / s + z;
      result.v[k] = from_float<T>((v >= qmin && v <= qmax) ? to_float(g.v[k]) : 0.0f);
    }
    reinterpret_cast<Pack<T, VEC>*>(grad_x)[i] = result;
  }
}

template <typename T, typename TOut>
void launch_forward(const FakeQuantLaunch& l, const void* x, void* out) {
  constexpr int kVec = 16 / sizeof(T);
  constexpr int kThreads = 256;
  auto stream = static_cast<cudaStream_t>(l.stream);
  const bool vectorized = l.unit_len % kVec == 0 && aligned16(x) && aligned16(out);
  const int64_t packs = vectorized ? l.numel / kVec : l.numel;
  const int blocks = static_cast<int>(std::min<int64_t>((packs + kThreads - 1) / kThreads, l.max_blocks));
  if (packs == 0) return;
  if (vectorized)
    forward_kernel<T, TOut, kVec><<<blocks, kThreads, 0, stream>>>(
        static_cast<const T*>(x), static_cast<TOut*>(out), l.scale, l.zero_point, l.dequant_scale, packs, l.unit_len, l.qmin,
        l.qmax, l.grid);
  else
    forward_kernel<T, TOut, 1><<<blocks, kThreads, 0, stream>>>(static_cast<const T*>(x), static_cast<TOut*>(out),
                                                                l.scale, l.zero_point, l.dequant_scale, packs,
                                                                l.unit_len, l.qmin, l.qmax, l.grid);
  check_launch("fake_quant_forward");
}

template <typename T, typename TOut>
void launch_backward(const FakeQuantLaunch& l, const void* x, const void* grad_out, void* grad_x) {
  constexpr int kVec = 16 / sizeof(T);
  constexpr int kThreads = 256;
  auto stream = static_cast<cudaStream_t>(l.stream);
  const bool vectorized =
      l.unit_len % kVec == 0 && aligned16(x) && aligned16(grad_out) && aligned16(grad_x);
  const int64_t packs = vectorized ? l.numel / kVec : l.numel;
  const int blocks = static_cast<int>(std::min<int64_t>((packs + kThreads - 1) / kThreads, l.max_blocks));
  if (packs == 0) return;
  if (vectorized)
    backward_kernel<T, TOut, kVec><<<blocks, kThreads, 0, stream>>>(
        static_cast<const T*>(x), static_cast<const TOut*>(grad_out), static_cast<T*>(grad_x), l.scale,
        l.zero_point, packs, l.unit_len, l.qmin, l.qmax);
  else
    backward_kernel<T, TOut, 1><<<blocks, kThreads, 0, stream>>>(
        static_cast<const T*>(x), static_cast<const TOut*>(grad_out), static_cast<T*>(grad_x), l.scale,
        l.zero_point, packs, l.unit_len, l.qmin, l.qmax);
  check_launch("fake_quant_backward");
}

// The (input, output) type pairs: each type to itself, fp32 to the two autocast types.
template <template <typename, typename> class Fn, typename... Args>
void dispatch(const FakeQuantLaunch& l, Args... args) {
  using E = ElementType;
  if (l.type == E::float32 && l.out_type == E::float32) return Fn<float, float>::run(l, args...);
  if (l.type == E::float32 && l.out_type == E::bfloat16) return Fn<float, __nv_bfloat16>::run(l, args...);
  if (l.type == E::float32 && l.out_type == E::float16) return Fn<float, __half>::run(l, args...);
  if (l.type == E::bfloat16 && l.out_type == E::bfloat16) return Fn<__nv_bfloat16, __nv_bfloat16>::run(l, args...);
  if (l.type == E::float16 && l.out_type == E::float16) return Fn<__half, __half>::run(l, args...);
  throw std::invalid_argument("fake_quant: unsupported input/output element types");
}

template <typename T, typename TOut>
struct Forward {
  static void run(const FakeQuantLaunch& l, const void* x, void* out) { launch_forward<T, TOut>(l, x, out); }
};
template <typename T, typename TOut>
struct Backward {
  static void run(const FakeQuantLaunch& l, const void* x, const void* g, void* gx) {
    launch_backward<T, TOut>(l, x, g, gx);
  }
};

}  // namespace

void fake_quant_forward(const FakeQuantLaunch& launch, const void* x, void* out) {
  dispatch<Forward>(launch, x, out);
}

void fake_quant_backward(const FakeQuantLaunch& launch, const void* x, const void* grad_out, void* grad_x) {
  dispatch<Backward>(launch, x, grad_out, grad_x);
}

}  // namespace qtrain::quant::cuda
