// Tensor checks and launch of the fused logit loss.
#include "distill/cuda/fused_logit_loss.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "distill/cuda/logit_loss_kernel.h"

namespace qtrain::distill::cuda {

namespace {

bool supported(torch::ScalarType t) {
  return t == torch::kFloat32 || t == torch::kFloat16 || t == torch::kBFloat16;
}

LogitType logit_type(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return LogitType::float32;
    case torch::kFloat16: return LogitType::float16;
    default: return LogitType::bfloat16;
  }
}

}  // namespace

bool fused_logit_loss_applies(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits) {
  if (!student_logits.is_cuda() || student_logits.dim() != 2 || !supported(student_logits.scalar_type())) return false;
  if (!teacher_logits.defined()) return true;
  return teacher_logits.is_cuda() && teacher_logits.sizes() == student_logits.sizes() &&
         supported(teacher_logits.scalar_type());
}

FusedLogitLoss fused_logit_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                                const torch::Tensor& labels, const torch::Tensor& row_weight, int64_t ignored_label,
                                double temperature, double kd_grad_scale, bool want_grad, torch::ScalarType grad_dtype) {
  TORCH_CHECK(fused_logit_loss_applies(student_logits, teacher_logits), "fused_logit_loss: unsupported logits");
  TORCH_CHECK(teacher_logits.defined() || row_weight.defined(), "fused_logit_loss: neither a KD nor a CE term");
  TORCH_CHECK(supported(grad_dtype), "fused_logit_loss: unsupported gradient dtype");
  const c10::cuda::CUDAGuard guard(student_logits.device());
  const auto s = student_logits.contiguous();
  const auto t = teacher_logits.defined() ? teacher_logits.contiguous() : torch::Tensor();
  const auto rows = s.size(0), vocab = s.size(1);
  const auto f32 = s.options().dtype(torch::kFloat32);
  FusedLogitLoss out;
  if (want_grad) out.grad = torch::empty({rows, vocab}, s.options().dtype(grad_dtype));
  if (t.defined()) out.kd_row = torch::empty({rows}, f32);
  torch::Tensor label_rows, weights;
  if (row_weight.defined()) {
    TORCH_CHECK(labels.defined() && labels.numel() == rows && row_weight.numel() == rows,
                "fused_logit_loss: labels and row_weight need one entry per row");
    label_rows = labels.to(s.device(), torch::kInt64).contiguous();
    weights = row_weight.to(s.device(), torch::kFloat32).contiguous();
    out.ce_row = torch::empty({rows}, f32);
  }
  LogitLossLaunch l;
  l.rows = rows;
  l.vocab = vocab;
  l.student_type = logit_type(s.scalar_type());
  l.teacher_type = t.defined() ? logit_type(t.scalar_type()) : l.student_type;
  l.grad_type = logit_type(grad_dtype);
  l.student = s.data_ptr();
  l.teacher = t.defined() ? t.data_ptr() : nullptr;
  l.labels = label_rows.defined() ? label_rows.data_ptr<int64_t>() : nullptr;
  l.row_weight = weights.defined() ? weights.data_ptr<float>() : nullptr;
  l.ignored_label = ignored_label;
  l.inv_temperature = static_cast<float>(1.0 / temperature);
  l.kd_grad_scale = static_cast<float>(kd_grad_scale);
  l.grad = want_grad ? out.grad.data_ptr() : nullptr;
  l.kd_row = out.kd_row.defined() ? out.kd_row.data_ptr<float>() : nullptr;
  l.ce_row = out.ce_row.defined() ? out.ce_row.data_ptr<float>() : nullptr;
  l.stream = at::cuda::getCurrentCUDAStream().stream();
  launch_logit_loss(l);
  return out;
}

}  // namespace qtrain::distill::cuda
