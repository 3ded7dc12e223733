// The logit terms of distillation (ce and kd, defined as in kd_loss.h) computed a chunk of
// tokens at a time, fused with their gradients w.r.t. the student's final hidden states and
// lm_head weight, so that only one chunk's [chunk x vocab] logits ever exist (the fused
// linear cross-entropy of Liger-Kernel, Hsu et al. 2024, with the KL term added).
// docs/distillation.md has the definitions and the memory per chunk.
#pragma once
#include <torch/torch.h>

#include <cstdint>

namespace qtrain::distill {

// Labels with this value are left out of the cross-entropy (torch's cross_entropy default
// ignore_index, which next_token_cross_entropy uses); the KD term still counts their tokens.
constexpr int64_t kIgnoredLabel = -100;

struct ChunkedLogitLossOptions {
  double alpha = 0.0, beta = 1.0, temperature = 1.0;
  int64_t chunk_tokens = 1024;  // tokens whose logits exist at once
};

struct LogitLossTerms {
  torch::Tensor total;  // alpha * ce + beta * kd, fp32 scalar; carries the gradient
  torch::Tensor ce, kd; // fp32 scalars without gradient; 0 when their weight is 0
};

// student_hidden [N, H] (after the final norm), student_weight [V, H] (lm_head, or the tied
// embedding); teacher_hidden [N, Ht] and teacher_weight [V, Ht], needed only when beta > 0
// (no gradient flows to them); labels [N] int64. Equals, value and gradient,
//   alpha * next_token_cross_entropy(s, labels) + beta * kd_kl_loss(s, t, temperature)
// with s = student_hidden student_weight^T and t = teacher_hidden teacher_weight^T. Under
// CUDA autocast the student's matmuls run in the autocast dtype, as the reference's
// autocast linear does; the teacher's in its own dtype; every softmax in fp32.
LogitLossTerms chunked_logit_loss(const torch::Tensor& student_hidden, const torch::Tensor& student_weight,
                                  const torch::Tensor& teacher_hidden, const torch::Tensor& teacher_weight,
                                  const torch::Tensor& labels, const ChunkedLogitLossOptions& options);

}  // namespace qtrain::distill
