// The fused KD + CE kernel of one chunk of logits (logit_loss_kernel.cu) on LibTorch tensors
// (CUDA builds only); chunked_logit_loss.cpp calls it where it applies.
#pragma once
#include <torch/torch.h>

namespace qtrain::distill::cuda {

struct FusedLogitLoss {
  torch::Tensor grad;    // [rows, vocab] in grad_dtype; undefined without want_grad
  torch::Tensor kd_row;  // [rows] fp32: sum_v p_t (log p_t - log p_s) at temperature T; undefined without teacher
  torch::Tensor ce_row;  // [rows] fp32: -log softmax(s)[label], 0 for ignored labels; undefined without row_weight
};

// Whether the kernel takes these logits: CUDA, fp32/fp16/bf16, contiguous rows of one vocabulary.
bool fused_logit_loss_applies(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits);

// student_logits / teacher_logits [rows, vocab] (teacher undefined: no KD); labels [rows]
// int64 and row_weight [rows] fp32 (undefined: no CE); the gradient
//   kd_grad_scale * (softmax(s/T) - softmax(t/T)) + row_weight * (softmax(s) - onehot(label)).
FusedLogitLoss fused_logit_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                                const torch::Tensor& labels, const torch::Tensor& row_weight, int64_t ignored_label,
                                double temperature, double kd_grad_scale, bool want_grad, torch::ScalarType grad_dtype);

}  // namespace qtrain::distill::cuda
