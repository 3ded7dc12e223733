// Teacher loading and student construction.
#include "trainer/models.h"

#include <filesystem>
#include <fstream>
#include <regex>

#include "common/error.h"
#include "model/hf_checkpoint.h"

namespace qtrain::trainer {

namespace {

nlohmann::json read_json_file(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  if (!in) throw Error("cannot open config").file(path).key(key);
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("malformed JSON: ") + e.what()).file(path).key(key);
  }
}

// "model.layers.7.mlp.up_proj.weight" -> 7 (or -1), and the name with the layer replaced.
int64_t layer_of(const std::string& name) {
  static const std::regex pattern(R"(^model\.layers\.(\d+)\.)");
  std::smatch m;
  return std::regex_search(name, m, pattern) ? std::stoll(m[1]) : -1;
}

std::string with_layer(const std::string& name, int64_t layer) {
  static const std::regex pattern(R"(^model\.layers\.\d+\.)");
  return std::regex_replace(name, pattern, "model.layers." + std::to_string(layer) + ".");
}

}  // namespace

model::CausalLM load_teacher(const config::ModelSection& section, torch::Device device, torch::ScalarType dtype) {
  if (section.teacher == "none") return nullptr;
  auto teacher = model::load_causal_lm(section.teacher, {device, dtype});
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

void init_from_teacher(model::CausalLMImpl& student, model::CausalLMImpl& teacher) {
  torch::NoGradGuard no_grad;
  const auto n = student.config().num_hidden_layers, big_n = teacher.config().num_hidden_layers;
  auto source = teacher.named_parameters();
  for (auto& item : student.named_parameters()) {
    auto name = item.key();
    const auto layer = layer_of(name);
    if (layer >= 0) name = with_layer(name, layer * big_n / n);
    const auto* from = source.find(name);
    if (!from) continue;
    auto& to = item.value();
    if (to.dim() != from->dim()) continue;
    bool fits = true;
    for (int64_t d = 0; d < to.dim(); ++d) fits = fits && to.size(d) <= from->size(d);
    if (!fits) continue;
    auto slice = *from;
    for (int64_t d = 0; d < to.dim(); ++d) slice = slice.narrow(d, 0, to.size(d));
    to.copy_(slice);
  }
}

model::CausalLM build_student(const config::ModelSection& section, model::CausalLM teacher,
                              torch::Device device, uint64_t seed) {
  const std::string teacher_source = section.teacher + "/config.json";
  model::CausalLM student{nullptr};
  std::string source;
  if (section.student == "copy") {
    student = model::load_causal_lm(section.teacher, {device, torch::kFloat32});
    source = teacher_source;
  } else if (section.student == "config") {
    nlohmann::json config;
    if (!section.student_config.empty()) {
      config = read_json_file(section.student_config, "model.student_config");
      source = section.student_config;
    } else {
      QT_REQUIRE(teacher, "model.student: config without model.student_config needs a teacher to start from");
      config = teacher->config().raw;
      source = teacher_source + " with model.student_overrides";
    }
    config = apply_overrides(std::move(config), section.student_overrides);
    student = model::CausalLM(model::ModelConfig::from_json(config, source));
    model::init_weights(*student, section.init_std, seed);
    if (section.student_init == "teacher") {
      QT_REQUIRE(teacher, "model.student_init: teacher needs a teacher");
      init_from_teacher(*student, *teacher);
    }
    student->to(device, torch::kFloat32);
  } else {
    student = model::load_causal_lm(section.student, {device, torch::kFloat32});
    source = section.student + "/config.json";
  }
  if (teacher) check_same_vocabulary(teacher->config(), teacher_source, student->config(), source);
  student->train();
  return student;
}

}  // namespace qtrain::trainer
