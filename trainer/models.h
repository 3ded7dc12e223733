// Builds the teacher and the student of a job from its model section: the frozen teacher
// from its checkpoint folder, the student as a copy of it, from its own folder, or from a
// (smaller) config, initialised from the teacher's weights or at random.
#pragma once
#include <torch/torch.h>

#include <functional>
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
// What init_from_teacher copies into student parameter `student_name` of `sizes` from the
// teacher's tensors (`teacher(name)`, undefined where it has none), or undefined.
torch::Tensor teacher_init_value(const std::string& student_name, torch::IntArrayRef sizes, int64_t student_layers,
                                 int64_t teacher_layers, const std::function<torch::Tensor(const std::string&)>& teacher);

// A model built as a skeleton (model::Skeleton: shapes, no memory), and the values of its own
// parameters: for_each_value makes them one at a time, in registration order, each read
// from a checkpoint's mapping or generated when its turn comes, and passes each whole to
// fn(name, value), then drops it. ZeRO-3 start-up (trainer/session.cpp) streams them into
// each rank's shard, so that no rank ever holds a whole model.
using ValueFn = std::function<void(const std::string&, const torch::Tensor&)>;
struct ModelSkeleton {
  model::CausalLM model{nullptr};  // null for teacher "none"
  std::function<void(const ValueFn&)> for_each_value;
};
// As load_teacher, as a skeleton: the checkpoint is checked, not read.
ModelSkeleton teacher_skeleton(const config::ModelSection& section, torch::Device device, torch::ScalarType dtype);
// As build_student, as a skeleton, with the same values: weights copied from the teacher
// pass through `teacher_dtype`, as build_student takes them from the loaded teacher.
// `teacher` is the teacher's config, null without one.
ModelSkeleton student_skeleton(const config::ModelSection& section, const model::ModelConfig* teacher,
                               torch::ScalarType teacher_dtype, torch::Device device, uint64_t seed);

}  // namespace qtrain::trainer
