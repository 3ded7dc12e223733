// One forward of teacher and student, and the weighted sum of the loss terms.
#include "distill/distill_loss.h"

#include "common/compat.h"
#include "common/error.h"
#include "distill/kd_loss.h"

namespace qtrain::distill {

HiddenProjectionsImpl::HiddenProjectionsImpl(const DistillOptions& options, int64_t student_width,
                                             int64_t teacher_width) {
  if (options.gamma == 0 || student_width == teacher_width) return;
  auto list = register_module("proj", torch::nn::ModuleList());
  for (size_t i = 0; i < options.student_layers.size(); ++i) {
    projections_.emplace_back(torch::nn::LinearOptions(student_width, teacher_width).bias(false));
    list->push_back(projections_.back());
  }
}

torch::Tensor HiddenProjectionsImpl::forward(size_t pair, const torch::Tensor& student_hidden) {
  return projections_.empty() ? student_hidden : projections_[pair](student_hidden);
}

DistillLoss::DistillLoss(DistillOptions options, model::CausalLM student, model::CausalLM teacher,
                         HiddenProjections projections, torch::ScalarType compute_dtype)
    : options_(std::move(options)),
      student_(std::move(student)),
      teacher_(std::move(teacher)),
      projections_(std::move(projections)),
      compute_dtype_(compute_dtype) {
  QT_REQUIRE(teacher_ || (options_.beta == 0 && options_.gamma == 0), "distillation terms need a teacher");
  if (options_.gamma == 0) return;
  for (size_t i = 0; i < options_.student_layers.size(); ++i) {
    const auto s = options_.student_layers[i], t = options_.teacher_layers[i];
    if (s < 0 || s >= student_->config().num_hidden_layers)
      throw Error("student layer " + std::to_string(s) + " does not exist")
          .key("distill.student_layers")
          .expected("0 .. " + std::to_string(student_->config().num_hidden_layers - 1));
    if (t < 0 || t >= teacher_->config().num_hidden_layers)
      throw Error("teacher layer " + std::to_string(t) + " does not exist")
          .key("distill.teacher_layers")
          .expected("0 .. " + std::to_string(teacher_->config().num_hidden_layers - 1));
  }
}

LossTerms DistillLoss::compute(const torch::Tensor& input_ids, const torch::Tensor& labels) {
  const bool need_teacher = options_.beta > 0 || options_.gamma > 0;
  const bool need_layers = options_.gamma > 0;
  torch::Tensor teacher_logits;
  std::vector<torch::Tensor> teacher_layers;
  if (need_teacher) {
    torch::NoGradGuard no_grad;
    auto hidden = teacher_->hidden_states(input_ids, need_layers ? &teacher_layers : nullptr);
    if (options_.beta > 0) teacher_logits = teacher_->logits(hidden);
  }
  const auto device = input_ids.device();
  compat::AutocastGuard autocast(device, compute_dtype_);
  std::vector<torch::Tensor> student_layers;
  auto student_logits = student_->logits(student_->hidden_states(input_ids, need_layers ? &student_layers : nullptr));

  const auto zero = torch::zeros({}, torch::TensorOptions().device(device));
  LossTerms terms{zero, zero, zero, zero};
  if (options_.alpha > 0) terms.ce = next_token_cross_entropy(student_logits, labels);
  if (options_.beta > 0) terms.kd = kd_kl_loss(student_logits, teacher_logits, options_.temperature);
  if (need_layers) {
    auto sum = zero;
    for (size_t i = 0; i < options_.student_layers.size(); ++i)
      sum = sum + hidden_state_loss(projections_->forward(i, student_layers[options_.student_layers[i]]),
                                    teacher_layers[options_.teacher_layers[i]], options_.hidden_loss);
    terms.hidden = sum / static_cast<double>(options_.student_layers.size());
  }
  terms.total = options_.alpha * terms.ce + options_.beta * terms.kd + options_.gamma * terms.hidden;
  return terms;
}

}  // namespace qtrain::distill
