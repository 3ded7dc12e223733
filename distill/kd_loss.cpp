// Full-logit reference losses.
#include "distill/kd_loss.h"

namespace qtrain::distill {

torch::Tensor kd_kl_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits, double temperature) {
  const auto vocab = student_logits.size(-1);
  auto s = student_logits.reshape({-1, vocab}).to(torch::kFloat32) / temperature;
  auto t = teacher_logits.reshape({-1, vocab}).to(torch::kFloat32) / temperature;
  auto log_p_s = torch::log_softmax(s, -1);
  auto log_p_t = torch::log_softmax(t, -1);
  // KL(p_t || p_s) = sum p_t (log p_t - log p_s); the teacher carries no gradient.
  auto kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1);
  return kl.mean() * (temperature * temperature);
}

torch::Tensor next_token_cross_entropy(const torch::Tensor& student_logits, const torch::Tensor& labels) {
  const auto vocab = student_logits.size(-1);
  return torch::nn::functional::cross_entropy(student_logits.reshape({-1, vocab}).to(torch::kFloat32),
                                              labels.reshape({-1}));
}

torch::Tensor hidden_state_loss(const torch::Tensor& student, const torch::Tensor& teacher, config::HiddenLoss kind) {
  const auto width = student.size(-1);
  auto s = student.reshape({-1, width}).to(torch::kFloat32);
  auto t = teacher.reshape({-1, width}).to(torch::kFloat32);
  if (kind == config::HiddenLoss::cosine) return (1.0 - torch::cosine_similarity(s, t, /*dim=*/-1)).mean();
  return (s - t).pow(2).mean();
}

}  // namespace qtrain::distill
