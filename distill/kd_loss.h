// The loss terms of distillation, reference implementations on full logits:
//   kd:     T^2 * KL(softmax(t/T) || softmax(s/T)), summed over the vocabulary, averaged over
//           tokens (Hinton et al. 2015: T^2 keeps gradient magnitudes independent of T);
//   ce:     cross-entropy of the student on the next token, averaged over tokens;
//   hidden: MSE, or 1 - cosine similarity, between hidden states, averaged over tokens.
// Softmaxes are taken in fp32 whatever the logits' dtype.
#pragma once
#include <torch/torch.h>

#include <string>

#include "config/choices.h"

namespace qtrain::distill {

// logits [.., vocab] (any float dtype) -> scalar.
torch::Tensor kd_kl_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits, double temperature);
// logits [.., vocab], labels [..] int64 -> scalar.
torch::Tensor next_token_cross_entropy(const torch::Tensor& student_logits, const torch::Tensor& labels);
// [.., width] each (already projected to the same width) -> scalar.
torch::Tensor hidden_state_loss(const torch::Tensor& student, const torch::Tensor& teacher, config::HiddenLoss kind);

}  // namespace qtrain::distill
