// Builds the teacher and the student of a job from its model section: the frozen teacher
// from its checkpoint folder, the student as a copy of it, from its own folder, or from a
// (smaller) config, initialised from the teacher's weights or at random.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "config/job_config.h"
#include "model/causal_lm.h"

namespace qtrain::trainer {

// Frozen (no gradients, eval mode) in `dtype` on `device`; null for teacher "none".
model::CausalLM load_teacher(const config::ModelSection& section, torch::Device device, torch::ScalarType dtype);

// fp32 on `device` (the optimizer's master weights); `teacher` may be null.
model::CausalLM build_student(const config::ModelSection& section, model::CausalLM teacher,
                              torch::Device device, uint64_t seed);

// The teacher's and student's vocabularies must agree; throws naming both sources.
void check_same_vocabulary(const model::ModelConfig& teacher, const std::string& teacher_source,
                           const model::ModelConfig& student, const std::string& student_source);

// Applies "key=value" edits (value parsed as JSON, else taken as a string) to a config.json.
nlohmann::json apply_overrides(nlohmann::json config, const std::vector<std::string>& overrides);

// Copies teacher weights into a student built from a smaller config: layer i of n takes
// teacher layer floor(i * N / n); each tensor takes the leading slice of the teacher's along
// every dimension where it is not larger. Tensors with a larger dimension keep their values.
void init_from_teacher(model::CausalLMImpl& student, model::CausalLMImpl& teacher);

}  // namespace qtrain::trainer
