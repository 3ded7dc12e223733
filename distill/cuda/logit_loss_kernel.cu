// Fused KD + CE over the vocabulary, one block per token. Pass 1 reads the student's and the
// teacher's logits once and keeps running (max, sum of exp) pairs (the online softmax of
// Milakov & Gimelshein 2018) for s/T, t/T and, for the CE at T != 1, s itself; pass 2 reads
// them again and writes the gradient
//   kd_grad_scale * (softmax(s/T) - softmax(t/T)) + row_weight * (softmax(s) - onehot(label))
// in the matmul dtype, with the row's KL and CE terms. The LibTorch form
// (chunked_logit_loss.cpp) materializes about a dozen fp32 [chunk x vocab] tensors on the way;
// here the logits are read twice in their own dtype and the gradient written once.
// Arithmetic: fp32, as the reference's fp32 softmaxes; the sums are taken in another order,
// so terms agree to rounding (tests/distill/test_fused_logit_loss.cpp).
#include "distill/cuda/logit_loss_kernel.h"

#include "common/cuda/element.cuh"

namespace qtrain::distill::cuda {

namespace {

constexpr int kThreads = 1024;

using namespace qtrain::cuda;

// A softmax normaliser being accumulated: max and sum of exp(x - max).
struct Normaliser {
  float max = -INFINITY, sum = 0.0f;
  __device__ void add(float x) {
    if (x > max) {
      sum = sum * expf(max - x) + 1.0f;  // max - x < 0; exp(-inf) = 0 for the first element
      max = x;
    } else {
      sum += expf(x - max);
    }
  }
  __device__ void merge(float other_max, float other_sum) {
    const float m = fmaxf(max, other_max);
    if (m == -INFINITY) return;
    sum = sum * expf(max - m) + other_sum * expf(other_max - m);
    max = m;
  }
  __device__ float log_sum_exp() const { return max + logf(sum); }
};

__device__ Normaliser block_merge(Normaliser n, float* shared) {
  for (int offset = 16; offset > 0; offset /= 2)
    n.merge(__shfl_xor_sync(0xffffffffu, n.max, offset), __shfl_xor_sync(0xffffffffu, n.sum, offset));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // shared may still be read by a previous reduction
  if (lane == 0) shared[2 * warp] = n.max, shared[2 * warp + 1] = n.sum;
  __syncthreads();
  Normaliser all;
  for (int w = 0; w < kThreads / 32; ++w) all.merge(shared[2 * w], shared[2 * w + 1]);
  return all;
}

__device__ float block_sum(float v, float* shared) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < kThreads / 32; ++w) total += shared[w];
  return total;
}

// TS student, TT teacher, TG gradient; VEC elements per load (1 when rows are not aligned).
template <typename TS, typename TT, typename TG, int VEC>
__global__ void __launch_bounds__(kThreads) logit_loss_kernel(LogitLossLaunch l) {
  __shared__ float shared[2 * kThreads / 32];
  const int64_t row = blockIdx.x;
  const int64_t packs = l.vocab / VEC;
  const auto* s = reinterpret_cast<const Pack<TS, VEC>*>(static_cast<const TS*>(l.student) + row * l.vocab);
  const auto* t = l.teacher ? reinterpret_cast<const Pack<TT, VEC>*>(static_cast<const TT*>(l.teacher) + row * l.vocab)
                            : nullptr;
  const bool kd = t != nullptr, ce = l.labels != nullptr;
  const bool ce_separate = ce && (l.inv_temperature != 1.0f || !kd);  // CE needs softmax(s) at T = 1
  const int64_t label = ce ? l.labels[row] : -1;
  const bool counted = ce && label != l.ignored_label && label >= 0 && label < l.vocab;

  Normaliser ns, nt, n1;  // s/T, t/T, s
  for (int64_t i = threadIdx.x; i < packs; i += kThreads) {
    const auto ps = s[i];
    Pack<TT, VEC> pt;
    if (kd) pt = t[i];
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const float x = to_float(ps.v[k]);
      if (kd) ns.add(x * l.inv_temperature), nt.add(to_float(pt.v[k]) * l.inv_temperature);
      if (ce_separate) n1.add(x);
    }
  }
  float lse_s = 0.0f, lse_t = 0.0f, lse_1 = 0.0f;
  if (kd) lse_s = block_merge(ns, shared).log_sum_exp(), lse_t = block_merge(nt, shared).log_sum_exp();
  lse_1 = ce_separate ? block_merge(n1, shared).log_sum_exp() : lse_s;

  const float row_weight = counted ? l.row_weight[row] : 0.0f;
  auto* g = l.grad ? reinterpret_cast<Pack<TG, VEC>*>(static_cast<TG*>(l.grad) + row * l.vocab) : nullptr;
  float kl = 0.0f;
  for (int64_t i = threadIdx.x; i < packs; i += kThreads) {
    const auto ps = s[i];
    Pack<TT, VEC> pt;
    if (kd) pt = t[i];
    Pack<TG, VEC> out;
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const float x = to_float(ps.v[k]);
      float grad = 0.0f;
      if (kd) {
        const float log_ps = x * l.inv_temperature - lse_s, log_pt = to_float(pt.v[k]) * l.inv_temperature - lse_t;
        const float p_t = expf(log_pt);
        kl += p_t * (log_pt - log_ps);
        grad = l.kd_grad_scale * (expf(log_ps) - p_t);
      }
      if (ce) {
        const float p = expf(x - lse_1);
        grad += row_weight * (p - (i * VEC + k == label ? 1.0f : 0.0f));
      }
      out.v[k] = from_float<TG>(grad);
    }
    if (g) g[i] = out;
  }
  if (kd) {
    kl = block_sum(kl, shared);
    if (threadIdx.x == 0) l.kd_row[row] = kl;
  }
  if (ce && threadIdx.x == 0) {
    const float x = counted ? to_float(static_cast<const TS*>(l.student)[row * l.vocab + label]) : 0.0f;
    l.ce_row[row] = counted ? lse_1 - x : 0.0f;
  }
}

bool aligned_or_null(const void* p) { return p == nullptr || aligned16(p); }

template <typename TS, typename TT, typename TG>
void launch(const LogitLossLaunch& l) {
  constexpr int kVec = 16 / (sizeof(TS) > sizeof(TG) ? sizeof(TS) : sizeof(TG));
  auto stream = static_cast<cudaStream_t>(l.stream);
  const bool vectorized = l.vocab % kVec == 0 && aligned16(l.student) && aligned_or_null(l.teacher) &&
                          aligned_or_null(l.grad) &&
                          (sizeof(TT) * kVec <= 16);
  if (l.rows == 0) return;
  if (vectorized)
    logit_loss_kernel<TS, TT, TG, kVec><<<static_cast<unsigned>(l.rows), kThreads, 0, stream>>>(l);
  else
    logit_loss_kernel<TS, TT, TG, 1><<<static_cast<unsigned>(l.rows), kThreads, 0, stream>>>(l);
  check_launch("fused_logit_loss");
}

template <typename TS, typename TT>
void by_grad(const LogitLossLaunch& l) {
  switch (l.grad_type) {
    case LogitType::float32: return launch<TS, TT, float>(l);
    case LogitType::float16: return launch<TS, TT, __half>(l);
    case LogitType::bfloat16: return launch<TS, TT, __nv_bfloat16>(l);
  }
}

template <typename TS>
void by_teacher(const LogitLossLaunch& l) {
  switch (l.teacher_type) {
    case LogitType::float32: return by_grad<TS, float>(l);
    case LogitType::float16: return by_grad<TS, __half>(l);
    case LogitType::bfloat16: return by_grad<TS, __nv_bfloat16>(l);
  }
}

}  // namespace

void launch_logit_loss(const LogitLossLaunch& l) {
  switch (l.student_type) {
    case LogitType::float32: return by_teacher<float>(l);
    case LogitType::float16: return by_teacher<__half>(l);
    case LogitType::bfloat16: return by_teacher<__nv_bfloat16>(l);
  }
}

}  // namespace qtrain::distill::cuda
