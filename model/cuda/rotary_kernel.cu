// Fused rotary embedding (model/rope.cpp's apply_rotary): x * cos + rotate_half(x) * sin in
// one pass that reads x in its own strides (the transposed view of the projection) and writes
// a contiguous result; the backward is one pass too. The LibTorch form runs a negation, a
// concatenation, two products and a sum, each a full pass, and as many backward.
// Forward arithmetic is the reference's, rounding for rounding: each product, then the sum,
// rounded to the output dtype (the promotion of x's and cos's), without FMA contraction, so
// the forward gives the same bits. The backward computes g * cos + rotate_half^T(g * sin) in
// fp32 and rounds once, where autograd rounds each of its three contributions.
#include "common/cuda/element.cuh"
#include "model/cuda/kernels.h"

namespace qtrain::model::cuda {

namespace {

using namespace qtrain::cuda;

constexpr int kThreads = 256;

__device__ __forceinline__ int64_t x_offset(const RotaryLaunch& l, int64_t row) {
  const int64_t s = row % l.seq, h = (row / l.seq) % l.heads, b = row / (l.seq * l.heads);
  return b * l.stride_batch + h * l.stride_head + s * l.stride_seq;
}

// The cos and sin entries of pair j (j and j + half) of position s.
template <typename TC, int VEC>
struct Tables {
  Pack<TC, VEC> c1, c2, s1, s2;
  __device__ Tables(const TC* cos, const TC* sin, int64_t s, int64_t j, int64_t head_dim) {
    const int64_t half = head_dim / 2, at = s * head_dim + j;
    c1 = *reinterpret_cast<const Pack<TC, VEC>*>(cos + at);
    c2 = *reinterpret_cast<const Pack<TC, VEC>*>(cos + at + half);
    s1 = *reinterpret_cast<const Pack<TC, VEC>*>(sin + at);
    s2 = *reinterpret_cast<const Pack<TC, VEC>*>(sin + at + half);
  }
};

template <typename TX, typename TC, typename TO, int VEC>
__global__ void forward_kernel(RotaryLaunch l, const TX* __restrict__ x, const TC* __restrict__ cos,
                               const TC* __restrict__ sin, TO* __restrict__ out) {
  const int64_t half = l.head_dim / 2, per_row = half / VEC;
  const int64_t total = l.batch * l.heads * l.seq * per_row;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t row = t / per_row, j = (t % per_row) * VEC, s = row % l.seq;
    const TX* xr = x + x_offset(l, row);
    const auto x1 = *reinterpret_cast<const Pack<TX, VEC>*>(xr + j);
    const auto x2 = *reinterpret_cast<const Pack<TX, VEC>*>(xr + j + half);
    const Tables<TC, VEC> tables(cos, sin, s, j, l.head_dim);
    const auto &c1 = tables.c1, &c2 = tables.c2, &s1 = tables.s1, &s2 = tables.s2;
    Pack<TO, VEC> o1, o2;
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const float a = to_float(x1.v[k]), b = to_float(x2.v[k]);
      // out[j] = x[j] cos[j] + (-x[j + half]) sin[j]; out[j + half] = x[j + half] cos[j + half] + x[j] sin[j + half]
      o1.v[k] = from_float<TO>(__fadd_rn(round_to<TO>(__fmul_rn(a, to_float(c1.v[k]))),
                                         round_to<TO>(__fmul_rn(-b, to_float(s1.v[k])))));
      o2.v[k] = from_float<TO>(__fadd_rn(round_to<TO>(__fmul_rn(b, to_float(c2.v[k]))),
                                         round_to<TO>(__fmul_rn(a, to_float(s2.v[k])))));
    }
    TO* orow = out + row * l.head_dim;
    *reinterpret_cast<Pack<TO, VEC>*>(orow + j) = o1;
    *reinterpret_cast<Pack<TO, VEC>*>(orow + j + half) = o2;
  }
}

template <typename TX, typename TC, typename TO, int VEC>
__global__ void backward_kernel(RotaryLaunch l, const TO* __restrict__ g, const TC* __restrict__ cos,
                                const TC* __restrict__ sin, TX* __restrict__ grad_x) {
  const int64_t half = l.head_dim / 2, per_row = half / VEC;
  const int64_t total = l.batch * l.heads * l.seq * per_row;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t row = t / per_row, j = (t % per_row) * VEC, s = row % l.seq;
    const TO* gr = g + row * l.head_dim;
    const auto g1 = *reinterpret_cast<const Pack<TO, VEC>*>(gr + j);
    const auto g2 = *reinterpret_cast<const Pack<TO, VEC>*>(gr + j + half);
    const Tables<TC, VEC> tables(cos, sin, s, j, l.head_dim);
    const auto &c1 = tables.c1, &c2 = tables.c2, &s1 = tables.s1, &s2 = tables.s2;
    Pack<TX, VEC> o1, o2;
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const float a = to_float(g1.v[k]), b = to_float(g2.v[k]);
      o1.v[k] = from_float<TX>(a * to_float(c1.v[k]) + b * to_float(s2.v[k]));
      o2.v[k] = from_float<TX>(b * to_float(c2.v[k]) - a * to_float(s1.v[k]));
    }
    TX* xr = grad_x + row * l.head_dim;
    *reinterpret_cast<Pack<TX, VEC>*>(xr + j) = o1;
    *reinterpret_cast<Pack<TX, VEC>*>(xr + j + half) = o2;
  }
}

template <typename TX, typename TC, typename TO>
constexpr int vec_of() {
  constexpr size_t widest = sizeof(TX) > sizeof(TC) ? (sizeof(TX) > sizeof(TO) ? sizeof(TX) : sizeof(TO))
                                                    : (sizeof(TC) > sizeof(TO) ? sizeof(TC) : sizeof(TO));
  return static_cast<int>(16 / widest);
}

// Whether every row of x (and of the contiguous operands) starts on a 16-byte boundary.
bool rows_aligned(const RotaryLaunch& l, const void* x, size_t x_size, int vec) {
  const int64_t half = l.head_dim / 2;
  return half % vec == 0 && aligned16(x) && (l.stride_batch * x_size) % 16 == 0 && (l.stride_head * x_size) % 16 == 0 &&
         (l.stride_seq * x_size) % 16 == 0 && (half * x_size) % 16 == 0;
}

int blocks_for(int64_t threads) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((threads + kThreads - 1) / kThreads, 132 * 16)));
}

template <typename TX, typename TC, typename TO>
void run(const RotaryLaunch& l, const void* a, const void* cos, const void* sin, void* b, bool forward) {
  constexpr int kVec = vec_of<TX, TC, TO>();
  auto stream = static_cast<cudaStream_t>(l.stream);
  const auto* c = static_cast<const TC*>(cos);
  const auto* s = static_cast<const TC*>(sin);
  const int64_t rows = l.batch * l.heads * l.seq, half = l.head_dim / 2;
  const bool contiguous_ok = aligned16(cos) && aligned16(sin) && aligned16(b) && (half * sizeof(TC)) % 16 == 0 &&
                             (half * sizeof(TO)) % 16 == 0 && (half * sizeof(TX)) % 16 == 0;
  const bool vectorized = contiguous_ok && (forward ? rows_aligned(l, a, sizeof(TX), kVec) : aligned16(a));
  if (forward) {
    const auto* x = static_cast<const TX*>(a);
    auto* out = static_cast<TO*>(b);
    if (vectorized)
      forward_kernel<TX, TC, TO, kVec><<<blocks_for(rows * half / kVec), kThreads, 0, stream>>>(l, x, c, s, out);
    else
      forward_kernel<TX, TC, TO, 1><<<blocks_for(rows * half), kThreads, 0, stream>>>(l, x, c, s, out);
  } else {
    const auto* g = static_cast<const TO*>(a);
    auto* gx = static_cast<TX*>(b);
    if (vectorized)
      backward_kernel<TX, TC, TO, kVec><<<blocks_for(rows * half / kVec), kThreads, 0, stream>>>(l, g, c, s, gx);
    else
      backward_kernel<TX, TC, TO, 1><<<blocks_for(rows * half), kThreads, 0, stream>>>(l, g, c, s, gx);
  }
  check_launch(forward ? "rotary_forward" : "rotary_backward");
}

// (x, cos/sin, out): one dtype throughout, or narrow x with fp32 tables (out fp32).
void by_types(const RotaryLaunch& l, const void* a, const void* cos, const void* sin, void* b, bool forward) {
  const auto X = l.x_type, C = l.cs_type, O = l.out_type;
  if (X == DType::float32 && C == DType::float32 && O == DType::float32) return run<float, float, float>(l, a, cos, sin, b, forward);
  if (X == DType::bfloat16 && C == DType::bfloat16 && O == DType::bfloat16)
    return run<__nv_bfloat16, __nv_bfloat16, __nv_bfloat16>(l, a, cos, sin, b, forward);
  if (X == DType::float16 && C == DType::float16 && O == DType::float16) return run<__half, __half, __half>(l, a, cos, sin, b, forward);
  if (X == DType::bfloat16 && C == DType::float32 && O == DType::float32)
    return run<__nv_bfloat16, float, float>(l, a, cos, sin, b, forward);
  if (X == DType::float16 && C == DType::float32 && O == DType::float32) return run<__half, float, float>(l, a, cos, sin, b, forward);
  throw std::invalid_argument("rotary: unsupported dtype combination");
}

}  // namespace

void rotary_forward(const RotaryLaunch& l, const void* x, const void* cos, const void* sin, void* out) {
  if (l.batch * l.heads * l.seq == 0) return;
  by_types(l, x, cos, sin, out, true);
}

void rotary_backward(const RotaryLaunch& l, const void* grad_out, const void* cos, const void* sin, void* grad_x) {
  if (l.batch * l.heads * l.seq == 0) return;
  by_types(l, grad_out, cos, sin, grad_x, false);
}

}  // namespace qtrain::model::cuda
