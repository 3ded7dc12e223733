// Fused RMSNorm: the forward reads x once and writes out (and one rstd per row); the backward
// is one pass for grad_x (a warp per row) and one for the weight's partial sums (a block per
// tile of rows). The LibTorch form (model/layers.cpp) runs about six kernels forward and a
// dozen backward, each a full pass over fp32 [tokens x hidden] tensors.
// Arithmetic as the reference: fp32, mean = sum * (1/hidden), rsqrtf, x * rstd rounded to x's
// dtype, times the weight, rounded to the output dtype. The row sum runs in another order
// than ATen's, so outputs agree to fp32 rounding (tests/model/test_fused_layers.cpp).
#include "common/cuda/element.cuh"
#include "model/cuda/kernels.h"

namespace qtrain::model::cuda {

namespace {

using namespace qtrain::cuda;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

template <typename TX, typename TW, typename TO, int VEC>
__global__ void __launch_bounds__(kThreads) forward_kernel(const TX* __restrict__ x, const TW* __restrict__ w,
                                                           TO* __restrict__ out, float* __restrict__ rstd,
                                                           int64_t rows, int64_t hidden, float eps) {
  const int lane = threadIdx.x % 32;
  const int64_t packs = hidden / VEC;
  for (int64_t row = blockIdx.x * static_cast<int64_t>(kWarps) + threadIdx.x / 32; row < rows;
       row += static_cast<int64_t>(gridDim.x) * kWarps) {
    const auto* xr = reinterpret_cast<const Pack<TX, VEC>*>(x + row * hidden);
    float sum = 0.0f;
    for (int64_t i = lane; i < packs; i += 32) {
      const auto p = xr[i];
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        const float v = to_float(p.v[k]);
        sum += v * v;
      }
    }
    const float r = rsqrtf(warp_sum(sum) * (1.0f / static_cast<float>(hidden)) + eps);
    if (lane == 0) rstd[row] = r;
    const auto* wp = reinterpret_cast<const Pack<TW, VEC>*>(w);
    auto* orow = reinterpret_cast<Pack<TO, VEC>*>(out + row * hidden);
    for (int64_t i = lane; i < packs; i += 32) {
      const auto p = xr[i];
      const auto wv = wp[i];
      Pack<TO, VEC> o;
#pragma unroll
      for (int k = 0; k < VEC; ++k) o.v[k] = from_float<TO>(to_float(wv.v[k]) * round_to<TX>(to_float(p.v[k]) * r));
      orow[i] = o;
    }
  }
}

// grad_x = rstd * (g w - n * mean(g w n)), n = x * rstd.
template <typename TX, typename TW, typename TO, int VEC>
__global__ void __launch_bounds__(kThreads) grad_x_kernel(const TO* __restrict__ g, const TX* __restrict__ x,
                                                          const TW* __restrict__ w, const float* __restrict__ rstd,
                                                          TX* __restrict__ grad_x, int64_t rows, int64_t hidden) {
  const int lane = threadIdx.x % 32;
  const int64_t packs = hidden / VEC;
  const auto* wp = reinterpret_cast<const Pack<TW, VEC>*>(w);
  for (int64_t row = blockIdx.x * static_cast<int64_t>(kWarps) + threadIdx.x / 32; row < rows;
       row += static_cast<int64_t>(gridDim.x) * kWarps) {
    const auto* xr = reinterpret_cast<const Pack<TX, VEC>*>(x + row * hidden);
    const auto* gr = reinterpret_cast<const Pack<TO, VEC>*>(g + row * hidden);
    const float r = rstd[row];
    float dot = 0.0f;
    for (int64_t i = lane; i < packs; i += 32) {
      const auto xp = xr[i];
      const auto gp = gr[i];
      const auto wv = wp[i];
#pragma unroll
      for (int k = 0; k < VEC; ++k) dot += to_float(gp.v[k]) * to_float(wv.v[k]) * (to_float(xp.v[k]) * r);
    }
    const float mean_dot = warp_sum(dot) * (1.0f / static_cast<float>(hidden));
    auto* out = reinterpret_cast<Pack<TX, VEC>*>(grad_x + row * hidden);
    for (int64_t i = lane; i < packs; i += 32) {
      const auto xp = xr[i];
      const auto gp = gr[i];
      const auto wv = wp[i];
      Pack<TX, VEC> o;
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        const float n = to_float(xp.v[k]) * r;
        o.v[k] = from_float<TX>(r * (to_float(gp.v[k]) * to_float(wv.v[k]) - n * mean_dot));
      }
      out[i] = o;
    }
  }
}

// partial[tile, col] = sum over the tile's rows of g * round_x(x * rstd).
template <typename TX, typename TO, int VEC>
__global__ void __launch_bounds__(kThreads) grad_w_kernel(const TO* __restrict__ g, const TX* __restrict__ x,
                                                          const float* __restrict__ rstd, float* __restrict__ partial,
                                                          int64_t rows, int64_t hidden, int64_t rows_per_tile) {
  const int64_t tile = blockIdx.x;
  const int64_t first = tile * rows_per_tile, last = min(rows, first + rows_per_tile);
  const int64_t packs = hidden / VEC;
  for (int64_t i = threadIdx.x; i < packs; i += kThreads) {
    float acc[VEC] = {};
    for (int64_t row = first; row < last; ++row) {
      const auto xp = reinterpret_cast<const Pack<TX, VEC>*>(x + row * hidden)[i];
      const auto gp = reinterpret_cast<const Pack<TO, VEC>*>(g + row * hidden)[i];
      const float r = rstd[row];
#pragma unroll
      for (int k = 0; k < VEC; ++k) acc[k] += to_float(gp.v[k]) * round_to<TX>(to_float(xp.v[k]) * r);
    }
#pragma unroll
    for (int k = 0; k < VEC; ++k) partial[tile * hidden + i * VEC + k] = acc[k];
  }
}

// 16-byte loads of the widest operand when every row and pointer allows it, else scalar.
template <typename TX, typename TW, typename TO>
constexpr int vec_of() {
  constexpr size_t widest = sizeof(TX) > sizeof(TW) ? (sizeof(TX) > sizeof(TO) ? sizeof(TX) : sizeof(TO))
                                                    : (sizeof(TW) > sizeof(TO) ? sizeof(TW) : sizeof(TO));
  return static_cast<int>(16 / widest);
}

int blocks_for(int64_t rows) { return static_cast<int>(std::min<int64_t>((rows + kWarps - 1) / kWarps, 65535)); }

template <typename TX, typename TW, typename TO>
void forward(const RmsNormLaunch& l, const void* x, const void* w, void* out, float* rstd) {
  constexpr int kVec = vec_of<TX, TW, TO>();
  auto stream = static_cast<cudaStream_t>(l.stream);
  const auto* xp = static_cast<const TX*>(x);
  const auto* wp = static_cast<const TW*>(w);
  auto* op = static_cast<TO*>(out);
  if (l.hidden % kVec == 0 && aligned16(x) && aligned16(w) && aligned16(out))
    forward_kernel<TX, TW, TO, kVec><<<blocks_for(l.rows), kThreads, 0, stream>>>(xp, wp, op, rstd, l.rows, l.hidden, l.eps);
  else
    forward_kernel<TX, TW, TO, 1><<<blocks_for(l.rows), kThreads, 0, stream>>>(xp, wp, op, rstd, l.rows, l.hidden, l.eps);
  check_launch("rms_norm_forward");
}

template <typename TX, typename TW, typename TO>
void backward(const RmsNormLaunch& l, const void* grad_out, const void* x, const void* w, const float* rstd,
              void* grad_x, float* partial) {
  constexpr int kVec = vec_of<TX, TW, TO>();
  auto stream = static_cast<cudaStream_t>(l.stream);
  const auto* gp = static_cast<const TO*>(grad_out);
  const auto* xp = static_cast<const TX*>(x);
  const auto* wp = static_cast<const TW*>(w);
  auto* gx = static_cast<TX*>(grad_x);
  const bool vectorized = l.hidden % kVec == 0 && aligned16(grad_out) && aligned16(x) && aligned16(w) && aligned16(grad_x);
  const int64_t tiles = rms_norm_weight_tiles(l.rows);
  const int64_t rows_per_tile = (l.rows + tiles - 1) / tiles;
  if (vectorized) {
    grad_x_kernel<TX, TW, TO, kVec><<<blocks_for(l.rows), kThreads, 0, stream>>>(gp, xp, wp, rstd, gx, l.rows, l.hidden);
    grad_w_kernel<TX, TO, kVec><<<static_cast<unsigned>(tiles), kThreads, 0, stream>>>(gp, xp, rstd, partial, l.rows,
                                                                                      l.hidden, rows_per_tile);
  } else {
    grad_x_kernel<TX, TW, TO, 1><<<blocks_for(l.rows), kThreads, 0, stream>>>(gp, xp, wp, rstd, gx, l.rows, l.hidden);
    grad_w_kernel<TX, TO, 1><<<static_cast<unsigned>(tiles), kThreads, 0, stream>>>(gp, xp, rstd, partial, l.rows,
                                                                                   l.hidden, rows_per_tile);
  }
  check_launch("rms_norm_backward");
}

// The (x, weight, out) dtype triples the decoder uses: one dtype throughout, or narrow
// activations with fp32 weights (out fp32).
template <template <typename, typename, typename> class Fn, typename... Args>
void by_types(const RmsNormLaunch& l, Args... args) {
  const auto X = l.x_type, W = l.w_type, O = l.out_type;
  if (X == DType::float32 && W == DType::float32 && O == DType::float32) return Fn<float, float, float>::run(l, args...);
  if (X == DType::bfloat16 && W == DType::bfloat16 && O == DType::bfloat16)
    return Fn<__nv_bfloat16, __nv_bfloat16, __nv_bfloat16>::run(l, args...);
  if (X == DType::float16 && W == DType::float16 && O == DType::float16) return Fn<__half, __half, __half>::run(l, args...);
  if (X == DType::bfloat16 && W == DType::float32 && O == DType::float32)
    return Fn<__nv_bfloat16, float, float>::run(l, args...);
  if (X == DType::float16 && W == DType::float32 && O == DType::float32) return Fn<__half, float, float>::run(l, args...);
  throw std::invalid_argument("rms_norm: unsupported dtype combination");
}

template <typename TX, typename TW, typename TO>
struct Forward {
  static void run(const RmsNormLaunch& l, const void* x, const void* w, void* out, float* rstd) {
    forward<TX, TW, TO>(l, x, w, out, rstd);
  }
};
template <typename TX, typename TW, typename TO>
struct Backward {
  static void run(const RmsNormLaunch& l, const void* g, const void* x, const void* w, const float* rstd, void* gx,
                  float* partial) {
    backward<TX, TW, TO>(l, g, x, w, rstd, gx, partial);
  }
};

}  // namespace

int64_t rms_norm_weight_tiles(int64_t rows) { return std::max<int64_t>(1, std::min<int64_t>(rows, 256)); }

void rms_norm_forward(const RmsNormLaunch& l, const void* x, const void* w, void* out, float* rstd) {
  if (l.rows == 0) return;
  by_types<Forward>(l, x, w, out, rstd);
}

void rms_norm_backward(const RmsNormLaunch& l, const void* grad_out, const void* x, const void* w, const float* rstd,
                       void* grad_x, float* grad_w_partial) {
  if (l.rows == 0) return;
  by_types<Backward>(l, grad_out, x, w, rstd, grad_x, grad_w_partial);
}

}  // namespace qtrain::model::cuda
