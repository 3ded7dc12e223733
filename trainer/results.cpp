// Results of the run's stages, into results.json.
#include "trainer/results.h"

#include <filesystem>
#include <fstream>

#include "common/atomic_file.h"
#include "common/dist.h"
#include "data/token_file.h"
#include "eval/perplexity.h"
#include "quant/export_size.h"
#include "quant/model_state.h"
#include "quant/quant_error.h"
#include "quant/quantized_model.h"

namespace qtrain::trainer {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int kResultsVersion = 1;

int64_t parameter_count(model::CausalLMImpl& model) {
  int64_t n = 0;
  for (const auto& [name, weight] : quant::split_state(model).weights) n += weight.numel();
  return n;
}

// Mean integer/FP8 width of the fake-quantized weights, weighted by their elements (scales
// not counted); 0 when nothing is fake-quantized.
double nominal_weight_bits(model::CausalLMImpl& model) {
  double bits = 0, weights = 0;
  auto modules = model.named_modules("", false);
  for (auto& [name, layer] : quant::fake_quant_layers(model)) {
    if (!layer->scheme().weights) continue;
    const auto n = static_cast<double>(modules[name]->as<model::LinearImpl>()->weight.numel());
    bits += n * layer->scheme().weights->num_bits;
    weights += n;
  }
  return weights > 0 ? bits / weights : 0.0;
}

}  // namespace

RunResults::RunResults(const config::JobConfig& job)
    : job_(job), path_((fs::path(job.run.output_dir) / "results.json").string()) {
  std::ifstream in(path_);
  if (in) results_ = json::parse(in, nullptr, false);
  if (!results_.is_object()) results_ = json::object();
  results_["version"] = kResultsVersion;
  results_["validation"] = {{"data", job.data.validation},
                            {"seq_len", job.eval.seq_len},
                            {"max_windows", job.eval.max_windows}};
  if (!results_.contains("stages")) results_["stages"] = json::object();
}

void RunResults::at_start(model::CausalLMImpl* teacher, model::CausalLMImpl& student) {
  const auto& c = student.config();
  results_["student_config"] = {{"hidden_size", c.hidden_size},
                                {"intermediate_size", c.intermediate_size},
                                {"num_hidden_layers", c.num_hidden_layers},
                                {"num_attention_heads", c.num_attention_heads},
                                {"num_key_value_heads", c.num_key_value_heads}};
  if (teacher) {
    measure("teacher", *teacher, 0);
    auto& t = results_["stages"]["teacher"];
    if (dist::is_main() && job_.model.teacher && fs::is_directory(*job_.model.teacher)) {
      const auto size = quant::folder_size(*job_.model.teacher);
      t["size_bytes"] = size.file_bytes;
      t["bits_per_weight"] = size.bits_per_weight();
    }
  }
  measure("start", student, 0);
  write();
}

eval::PerplexityResult evaluate_validation(model::CausalLMImpl& model, const config::JobConfig& job) {
  auto tokens = data::TokenFile::open(job.data.validation);
  eval::PerplexityOptions o;
  o.seq_len = job.eval.seq_len;
  o.batch_size = job.eval.batch_size;
  o.max_windows = job.eval.max_windows;
  o.show_progress = false;
  const bool was_training = model.is_training();
  model.eval();
  auto r = eval::evaluate_perplexity(model, tokens, o);
  if (was_training) model.train();
  return r;
}

double RunResults::measure(const std::string& stage, model::CausalLMImpl& model, int64_t step) {
  if (job_.data.validation.empty()) return 0.0;
  eval::PerplexityResult r;
  try {
    r = evaluate_validation(model, job_);
  } catch (Error& e) {
    // Name what was measured (issue 24): a teacher whose weights hold NaN is its folder's
    // fault, a student's after training the run's.
    if (e.file_name().empty())
      e.file(stage == "teacher"  ? job_.model.teacher.value_or("")
             : stage == "export" ? (fs::path(job_.run.output_dir) / "export").string()
                                 : job_.run.output_dir);
    throw;
  }
  json entry = {{"step", step},
                {"perplexity", r.perplexity},
                {"mean_nll", r.mean_nll},
                {"windows", r.windows},
                {"tokens_per_second", r.tokens_per_second}};
  if (stage != "export") {
    entry["parameters"] = parameter_count(model);
    const double bits = nominal_weight_bits(model);
    entry["fake_quant"] = bits > 0;
    if (bits > 0) entry["weight_bits"] = bits;
  }
  auto& stages = results_["stages"];
  if (stages.contains(stage))  // keep what an export recorded before its evaluation
    for (const auto& [key, value] : stages[stage].items())
      if (!entry.contains(key)) entry[key] = value;
  stages[stage] = entry;
  write();
  return r.perplexity;
}

void RunResults::exported(const std::string& dir, const std::vector<quant::LayerQuantError>& errors) {
  const auto size = quant::folder_size(dir);
  auto& e = results_["stages"]["export"];
  e["path"] = fs::relative(dir, job_.run.output_dir).string();
  e["size_bytes"] = size.file_bytes;
  e["bits_per_weight"] = size.bits_per_weight();
  e["quantized_linears"] = size.quantized_linears;
  json out = json::array();
  for (const auto& layer : errors)
    out.push_back({{"layer", layer.name}, {"scheme", layer.scheme}, {"relative_error", layer.relative_error}});
  results_["quant_error"] = out;
  write();
}

void RunResults::kernels(const nlohmann::json& choices) {
  results_["kernels"] = choices;
  write();
}

void RunResults::memory(int64_t peak, int64_t baseline, double estimate) {
  results_["memory"] = {{"peak_bytes", peak}, {"baseline_bytes", baseline}, {"estimate_bytes", estimate}};
  write();
}

void RunResults::write() const {
  if (!dist::is_main()) return;
  fs::create_directories(job_.run.output_dir);
  write_file_atomic(path_, results_.dump(2) + "\n");
}

}  // namespace qtrain::trainer
