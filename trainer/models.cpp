// Teacher loading and student construction.
#include "trainer/models.h"

#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>

#include "common/error.h"
#include "common/json_file.h"
#include "model/hf_checkpoint.h"

namespace qtrain::trainer {

namespace {

// The name with its decoder layer (model::decoder_layer_of) replaced.
std::string with_layer(const std::string& name, int64_t layer) {
  static const std::regex pattern(R"(^model\.layers\.\d+\.)");
  return std::regex_replace(name, pattern, "model.layers." + std::to_string(layer) + ".");
}

}  // namespace

model::CausalLM load_teacher(const config::ModelSection& section, torch::Device device, torch::ScalarType dtype) {
  if (!section.teacher) return nullptr;
  auto teacher = model::load_causal_lm(*section.teacher, {device, dtype});
  for (auto& p : teacher->parameters()) p.set_requires_grad(false);
  teacher->eval();
  return teacher;
}

nlohmann::json apply_overrides(nlohmann::json config, const std::vector<std::string>& overrides) {
  for (const auto& o : overrides) {
    const auto eq = o.find('=');
    if (eq == std::string::npos || eq == 0)
      throw Error("override '" + o + "' is not key=value").key("model.student_overrides").expected("key=value");
    const auto key = o.substr(0, eq), value = o.substr(eq + 1);
    try {
      config[key] = nlohmann::json::parse(value);
    } catch (const nlohmann::json::exception&) {
      config[key] = value;  // a bare word: a string
    }
  }
  return config;
}

void check_same_vocabulary(const model::ModelConfig& teacher, const std::string& teacher_source,
                           const model::ModelConfig& student, const std::string& student_source) {
  if (teacher.vocab_size != student.vocab_size)
    throw Error("student vocab_size " + std::to_string(student.vocab_size) + " differs from the teacher's (" +
                teacher_source + ")")
        .file(student_source)
        .key("vocab_size")
        .expected(std::to_string(teacher.vocab_size) + ", the teacher's: distillation compares distributions over one vocabulary");
}

torch::Tensor teacher_init_value(const std::string& student_name, torch::IntArrayRef sizes, int64_t student_layers,
                                 int64_t teacher_layers, const std::function<torch::Tensor(const std::string&)>& teacher) {
  auto name = student_name;
  const int64_t layer = model::decoder_layer_of(name);
  if (layer >= 0) name = with_layer(name, layer * teacher_layers / student_layers);
  auto from = teacher(name);
  if (!from.defined() || from.dim() != static_cast<int64_t>(sizes.size())) return {};
  for (int64_t d = 0; d < from.dim(); ++d)
    if (sizes[d] > from.size(d)) return {};
  for (int64_t d = 0; d < from.dim(); ++d) from = from.narrow(d, 0, sizes[d]);
  return from;
}

void init_from_teacher(model::CausalLMImpl& student, model::CausalLMImpl& teacher) {
  torch::NoGradGuard no_grad;
  auto source = teacher.named_parameters();
  const auto lookup = [&](const std::string& name) {
    const auto* p = source.find(name);
    return p ? *p : torch::Tensor();
  };
  for (auto& item : student.named_parameters()) {
    auto& to = item.value();
    const auto from = teacher_init_value(item.key(), to.sizes(), student.config().num_hidden_layers,
                                         teacher.config().num_hidden_layers, lookup);
    if (from.defined()) to.copy_(from);
  }
}

namespace {

// Where a student's weights come from: a checkpoint folder (copy, or its own), or none
// (initialised: seeded, then from the teacher with student_init: teacher).
struct StudentPlan {
  model::ModelConfig config;
  std::string source;  // where the config came from, for errors
  std::optional<model::HFCheckpoint> weights;
};

StudentPlan plan_student(const config::ModelSection& section, const model::ModelConfig* teacher) {
  const std::string teacher_dir = section.teacher.value_or("");
  const std::string teacher_source = teacher_dir + "/config.json";
  const auto source = section.student_source();
  if (source == config::StudentSource::copy) {
    auto ck = model::HFCheckpoint::open(teacher_dir);
    return {ck.config(), teacher_source, ck};
  }
  if (source == config::StudentSource::checkpoint) {
    auto ck = model::HFCheckpoint::open(section.student);
    return {ck.config(), section.student + "/config.json", ck};
  }
  nlohmann::json config;
  std::string config_source;
  if (!section.student_config.empty()) {
    config = read_json_file(section.student_config, "model.student_config");
    config_source = section.student_config;
  } else {
    QT_REQUIRE(teacher, "model.student: config without model.student_config needs a teacher to start from");
    config = teacher->raw;
    config_source = teacher_source + " with model.student_overrides";
  }
  config = apply_overrides(std::move(config), section.student_overrides);
  if (section.student_init == config::StudentInit::teacher)
    QT_REQUIRE(teacher, "model.student_init: teacher needs a teacher");
  return {model::ModelConfig::from_json(config, config_source), config_source, std::nullopt};
}

// The checkpoint's tensors for `shapes`, in order, as views of the mapping.
std::function<void(const ValueFn&)> values_of(const model::HFCheckpoint& ck, const model::ParameterShapes& shapes) {
  return [ck, shapes](const ValueFn& fn) {
    for (const auto& item : shapes) fn(item.first, ck.tensor(item.first));
  };
}

}  // namespace

model::CausalLM build_student(const config::ModelSection& section, model::CausalLM teacher,
                              torch::Device device, uint64_t seed) {
  auto plan = plan_student(section, teacher ? &teacher->config() : nullptr);
  model::CausalLM student(plan.config);
  if (plan.weights) {
    student->to(device, torch::kFloat32);
    model::load_weights(*student, *plan.weights);
  } else {
    model::init_weights(*student, section.init_std, seed);
    if (section.student_init == config::StudentInit::teacher) init_from_teacher(*student, *teacher);
    student->to(device, torch::kFloat32);
  }
  if (teacher)
    check_same_vocabulary(teacher->config(), *section.teacher + "/config.json", student->config(), plan.source);
  student->train();
  return student;
}

ModelSkeleton teacher_skeleton(const config::ModelSection& section, torch::Device device, torch::ScalarType dtype) {
  if (!section.teacher) return {};
  const auto ck = model::HFCheckpoint::open(*section.teacher);
  ModelSkeleton out;
  {
    model::Skeleton skeleton(torch::TensorOptions().device(device).dtype(dtype));
    out.model = model::CausalLM(ck.config());
  }
  model::check_weights(*out.model, ck);
  for (auto& p : out.model->parameters()) p.set_requires_grad(false);
  out.model->eval();
  out.for_each_value = values_of(ck, model::parameter_shapes(*out.model));
  return out;
}

ModelSkeleton student_skeleton(const config::ModelSection& section, const model::ModelConfig* teacher,
                               torch::ScalarType teacher_dtype, torch::Device device, uint64_t seed) {
  auto plan = plan_student(section, teacher);
  ModelSkeleton out;
  {
    model::Skeleton skeleton(torch::TensorOptions().device(device).dtype(torch::kFloat32));
    out.model = model::CausalLM(plan.config);
  }
  const auto shapes = model::parameter_shapes(*out.model);
  if (plan.weights) {
    model::check_weights(*out.model, *plan.weights);  // as build_student: the weights first, then the vocabulary
    out.for_each_value = values_of(*plan.weights, shapes);
  } else {
    // As build_student: the seeded values, each replaced by the teacher's slice where one
    // fits, rounded through the teacher's dtype as the loaded teacher holds it.
    std::optional<model::HFCheckpoint> from;
    if (section.student_init == config::StudentInit::teacher) from = model::HFCheckpoint::open(*section.teacher);
    const bool tied = teacher && teacher->tie_word_embeddings;
    const auto layers = plan.config.num_hidden_layers, teacher_layers = teacher ? teacher->num_hidden_layers : 0;
    out.for_each_value = [=, init_std = section.init_std](const ValueFn& fn) {
      const auto lookup = [&](const std::string& name) {
        if (!from || !from->contains(name) || (tied && name == "lm_head.weight")) return torch::Tensor();
        return from->tensor(name);
      };
      model::for_each_initial_value(shapes, init_std, seed, [&](const std::string& name, const torch::Tensor& value) {
        const auto slice = teacher_init_value(name, value.sizes(), layers, teacher_layers, lookup);
        fn(name, slice.defined() ? slice.to(teacher_dtype) : value);
      });
    };
  }
  if (teacher) check_same_vocabulary(*teacher, *section.teacher + "/config.json", plan.config, plan.source);
  out.model->train();
  return out;
}

}  // namespace qtrain::trainer
