// Launcher of the fused per-token KD + CE kernel (logit_loss_kernel.cu): from one chunk's
// student and teacher logits it computes, per token, KL(p_t || p_s) at temperature T and
// -log p_s[label], and d(loss)/d(student logits), in two passes over the logits. Plain
// pointers and no LibTorch types, so the .cu file compiles with nvcc alone.
#pragma once
#include <cstdint>

namespace qtrain::distill::cuda {

enum class LogitType { float32, float16, bfloat16 };

struct LogitLossLaunch {
  int64_t rows, vocab;
  LogitType student_type, teacher_type, grad_type;
  const void* student;          // [rows, vocab]
  const void* teacher;          // [rows, vocab], or null: no KD term
  const int64_t* labels;        // [rows], or null: no CE term; ignored_label is left out
  const float* row_weight;      // [rows]: d(loss)/d(ce of the row) (alpha / counted, 0 if ignored)
  int64_t ignored_label;
  float inv_temperature;        // 1 / T
  float kd_grad_scale;          // d(loss)/d(kd of a row) * T: beta * T / tokens
  void* grad;                   // [rows, vocab] in grad_type, or null: no gradient
  float* kd_row;                // [rows]: sum_v p_t (log p_t - log p_s), fp32 (when teacher)
  float* ce_row;                // [rows]: -log p_s[label] at T = 1, 0 for ignored (when labels)
  void* stream;                 // cudaStream_t
};

void launch_logit_loss(const LogitLossLaunch& launch);

}  // namespace qtrain::distill::cuda
