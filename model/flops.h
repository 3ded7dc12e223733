// FLOPs of the model per token (docs/performance.md): a forward is 2 x the matmul parameters
// (every linear and lm_head; not the embedding lookup) + 2 x layers x seq x heads x head_dim
// (QK^T and PV with the causal half). Backward is twice the forward.
#pragma once
#include <cstdint>

#include "model/model_config.h"

namespace qtrain::model {

double forward_flops_per_token(const ModelConfig& c, int64_t seq_len);
// Distillation: student forward + backward (3x forward) + teacher forward (if any).
double distill_flops_per_token(const ModelConfig& student, const ModelConfig* teacher, int64_t seq_len);

}  // namespace qtrain::model
