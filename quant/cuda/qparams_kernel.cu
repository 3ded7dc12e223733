// Min-max scales and zero points in one pass: a warp per unit reduces its min and max
// (16-byte loads where the unit allows), then lane 0 applies qparams_from_minmax's formulas.
// They are written the way LibTorch's CUDA kernels evaluate the reference's expressions, so
// that both give the same bits (tests/quant/test_fused_fake_quant.cpp): a tensor divided by a
// host scalar is multiplied by the scalar's fp32 reciprocal (ATen's div_true_kernel_cuda),
// a tensor by a tensor is an IEEE division, rounding is to nearest even. The unfused form
// launches about fifteen kernels per call; for a weight-only int4 QAT step that is most of
// the fake-quant overhead (docs/performance.md).
#include "quant/cuda/qparams_kernel.h"

#include <algorithm>

#include "common/cuda/element.cuh"

namespace qtrain::quant::cuda {

namespace {

using namespace qtrain::cuda;

__device__ __forceinline__ float round_scale(float s, ScaleStorage storage) {
  switch (storage) {
    case ScaleStorage::bfloat16: return round_to<__nv_bfloat16>(s);
    case ScaleStorage::float16: return round_to<__half>(s);
    default: return s;
  }
}

template <typename T, int VEC>
__global__ void minmax_qparams_kernel(const T* __restrict__ x, float* __restrict__ scale,
                                      float* __restrict__ zero_point, int64_t units, int64_t unit_len, float qmin,
                                      float qmax, bool symmetric, ScaleStorage storage, float epsilon) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  const int64_t packs = unit_len / VEC;
  for (int64_t unit = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32; unit < units;
       unit += warps) {
    const auto* row = reinterpret_cast<const Pack<T, VEC>*>(x + unit * unit_len);
    float lo = INFINITY, hi = -INFINITY;
    for (int64_t i = lane; i < packs; i += 32) {
      const auto p = row[i];
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        const float v = to_float(p.v[k]);
        lo = fminf(lo, v);
        hi = fmaxf(hi, v);
      }
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) {
      lo = fminf(lo, __shfl_xor_sync(0xffffffffu, lo, offset));
      hi = fmaxf(hi, __shfl_xor_sync(0xffffffffu, hi, offset));
    }
    if (lane != 0) continue;
    lo = fminf(lo, 0.0f);
    hi = fmaxf(hi, 0.0f);
    const float range = qmax - qmin;
    float s = symmetric ? fmaxf(fabsf(lo), fabsf(hi)) * (1.0f / static_cast<float>(range / 2.0))
                        : (hi - lo) * (1.0f / range);
    s = round_scale(s > 0.0f ? s : epsilon, storage);
    scale[unit] = s;
    zero_point[unit] = symmetric ? 0.0f : rintf(fminf(fmaxf(qmin - lo / s, qmin), qmax));
  }
}

template <typename T>
void launch(const QParamsLaunch& l, const void* x, float* scale, float* zero_point) {
  constexpr int kVec = 16 / sizeof(T);
  constexpr int kThreads = 256;
  if (l.units == 0) return;
  const int64_t warps_per_block = kThreads / 32;
  const int blocks = static_cast<int>(std::min<int64_t>((l.units + warps_per_block - 1) / warps_per_block, 65535));
  auto stream = static_cast<cudaStream_t>(l.stream);
  const auto* data = static_cast<const T*>(x);
  if (l.unit_len % kVec == 0 && aligned16(x))
    minmax_qparams_kernel<T, kVec><<<blocks, kThreads, 0, stream>>>(data, scale, zero_point, l.units, l.unit_len, l.qmin,
                                                                   l.qmax, l.symmetric, l.storage, l.epsilon);
  else
    minmax_qparams_kernel<T, 1><<<blocks, kThreads, 0, stream>>>(data, scale, zero_point, l.units, l.unit_len, l.qmin,
                                                                l.qmax, l.symmetric, l.storage, l.epsilon);
  check_launch("minmax_qparams");
}

}  // namespace

void minmax_qparams(const QParamsLaunch& l, const void* x, float* scale, float* zero_point) {
  switch (l.type) {
    case ElementType::float32: return launch<float>(l, x, scale, zero_point);
    case ElementType::float16: return launch<__half>(l, x, scale, zero_point);
    case ElementType::bfloat16: return launch<__nv_bfloat16>(l, x, scale, zero_point);
  }
}

}  // namespace qtrain::quant::cuda
