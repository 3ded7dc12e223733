// The training objective of a distillation step, composed from the terms of kd_loss.h:
//   total = alpha * ce + beta * kd + gamma * mean over layer pairs of hidden(student_i, teacher_j)
//           + router_aux_loss * the student's load-balancing loss (model/moe.h)
// The teacher runs without gradients in its own dtype; the student runs under autocast (bf16
// compute, fp32 weights) on GPU. Where a student layer's width differs from its teacher
// layer's, a learned linear projection (student -> teacher width) is trained with the student.
// With loss_chunk_tokens > 0, ce and kd come from chunked_logit_loss.h (one chunk of logits
// at a time) wherever both lm_heads are plain linears; else from the full logits.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "config/choices.h"
#include "model/causal_lm.h"

namespace qtrain::distill {

struct DistillOptions {
  double alpha = 0.0, beta = 1.0, temperature = 1.0, gamma = 0.0;
  config::HiddenLoss hidden_loss = config::HiddenLoss::mse;
  std::vector<int64_t> student_layers, teacher_layers;
  int64_t loss_chunk_tokens = 1024;  // 0: ce and kd on full [tokens x vocab] logits
  double router_aux_loss = 0.0;      // weight of the student's load-balancing loss (MoE students)
};

// Every term as a scalar tensor (0 when its weight is 0); `total` carries the gradient.
struct LossTerms {
  torch::Tensor total, ce, kd, hidden, router;
};

// The projections of the hidden-state loss, one per layer pair ("proj.<i>"); pairs of equal
// width get none.
class HiddenProjectionsImpl : public torch::nn::Module {
 public:
  HiddenProjectionsImpl(const DistillOptions& options, int64_t student_width, int64_t teacher_width);
  torch::Tensor forward(size_t pair, const torch::Tensor& student_hidden);
  bool empty() const { return projections_.empty(); }

 private:
  std::vector<torch::nn::Linear> projections_;
};
TORCH_MODULE(HiddenProjections);

class DistillLoss {
 public:
  // `teacher` may be null when beta and gamma are 0. Checks layer indices against both models.
  DistillLoss(DistillOptions options, model::CausalLM student, model::CausalLM teacher, HiddenProjections projections,
              torch::ScalarType compute_dtype);
  LossTerms compute(const torch::Tensor& input_ids, const torch::Tensor& labels);
  // Whether compute() takes ce and kd chunk by chunk now (the lm_heads carry no wrapper).
  bool chunked() const;

 private:
  // alpha * ce + beta * kd into terms.total (and terms.ce, terms.kd), from the full logits
  // or chunk by chunk from the final hidden states [.., H].
  void logit_terms_full(const torch::Tensor& student_hidden, const torch::Tensor& teacher_logits,
                        const torch::Tensor& labels, LossTerms& terms);
  void logit_terms_chunked(const torch::Tensor& student_hidden, const torch::Tensor& teacher_hidden,
                           const torch::Tensor& labels, LossTerms& terms);

  DistillOptions options_;
  model::CausalLM student_, teacher_;
  HiddenProjections projections_;
  torch::ScalarType compute_dtype_;
};

}  // namespace qtrain::distill
