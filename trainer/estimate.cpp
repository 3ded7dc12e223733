// Memory and time model of a distillation job.
#include "trainer/estimate.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "model/flops.h"
#include "model/model_config.h"
#include "trainer/models.h"

namespace qtrain::trainer {

namespace {

constexpr double kActivationBytesPerTokenPerLayerPerHidden = 34.0;  // Korthikanti et al. 2022, bf16, flash attention
constexpr double kLossBytesPerLogit = 40.0;  // reference KD path: bf16 logits, fp32 copies, softmaxes, products
constexpr double kAssumedMfu = 0.30;         // measured 27-31% for the 1B job (docs/performance.md)
constexpr double kGpuPeak = 989.4e12;        // H100/H200 dense bf16

model::ModelConfig student_config(const config::ModelSection& m, const model::ModelConfig* teacher) {
  if (m.student == "copy") return *teacher;
  if (m.student == "config") {
    nlohmann::json raw = teacher ? teacher->raw : nlohmann::json::object();
    if (!m.student_config.empty()) {
      std::ifstream in(m.student_config);
      raw = nlohmann::json::parse(in);
    }
    return model::ModelConfig::from_json(apply_overrides(raw, m.student_overrides), "student config");
  }
  return model::ModelConfig::from_file((std::filesystem::path(m.student) / "config.json").string());
}

std::string gb(double bytes) {
  char text[32];
  if (bytes < 1e9)
    std::snprintf(text, sizeof(text), "%.0f MB", bytes / 1e6);
  else
    std::snprintf(text, sizeof(text), "%.1f GB", bytes / 1e9);
  return text;
}

}  // namespace

JobEstimate estimate_job(const config::JobConfig& job, int ranks, bool on_gpu) {
  JobEstimate e;
  try {
    std::unique_ptr<model::ModelConfig> teacher;
    if (job.model.teacher != "none")
      teacher = std::make_unique<model::ModelConfig>(
          model::ModelConfig::from_file((std::filesystem::path(job.model.teacher) / "config.json").string()));
    const auto student = student_config(job.model, teacher.get());
    const double tokens = static_cast<double>(job.data.micro_batch_size * job.data.seq_len);
    e.student_parameters = static_cast<double>(student.num_parameters());
    // fp32 master weights (4) and gradients (4) on every rank; AdamW's two fp32 moments (8)
    // on every rank, or split over the ranks with ZeRO-1.
    e.optimizer_shards = job.parallel.zero_stage == 1 ? std::max(1, ranks) : 1;
    e.weights_grads_optimizer_bytes = (8.0 + 8.0 / e.optimizer_shards) * e.student_parameters;
    e.autocast_copies_bytes = on_gpu ? 2.0 * e.student_parameters : 0.0;
    if (teacher) {
      e.teacher_parameters = static_cast<double>(teacher->num_parameters());
      e.teacher_bytes = (on_gpu ? 2.0 : 4.0) * e.teacher_parameters;
    }
    e.activation_bytes = kActivationBytesPerTokenPerLayerPerHidden * tokens * student.num_hidden_layers *
                         student.hidden_size * (on_gpu ? 1.0 : 2.0);
    e.logits_bytes = kLossBytesPerLogit * tokens * student.vocab_size;
    e.total_bytes = e.weights_grads_optimizer_bytes + e.autocast_copies_bytes + e.teacher_bytes + e.activation_bytes +
                    e.logits_bytes;
    e.tokens_per_step = static_cast<double>(job.data.global_batch_size * job.data.seq_len);
    e.flops_per_step = e.tokens_per_step * model::distill_flops_per_token(student, teacher.get(), job.data.seq_len);
  } catch (const std::exception& ex) {
    e.problem = ex.what();
  }
  return e;
}

std::string describe_estimate(const JobEstimate& e, int ranks, bool on_gpu) {
  if (!e.problem.empty()) return "# estimate: not available (" + e.problem + ")\n";
  char line[256];
  std::string out = "# estimate per rank (" + std::to_string(ranks) + " rank" + (ranks > 1 ? "s" : "") + ", " +
                    (on_gpu ? "GPU, bf16 compute" : "CPU, fp32") + "; docs/performance.md):\n";
  const std::string sharding =
      e.optimizer_shards > 1 ? " (AdamW ZeRO-1 sharded over " + std::to_string(e.optimizer_shards) + " ranks)" : "";
  std::snprintf(line, sizeof(line), "#   student %.3gB parameters: weights + gradients + AdamW %s%s%s\n",
                e.student_parameters / 1e9, gb(e.weights_grads_optimizer_bytes).c_str(), sharding.c_str(),
                on_gpu ? (", bf16 copies " + gb(e.autocast_copies_bytes)).c_str() : "");
  out += line;
  if (e.teacher_parameters > 0) {
    std::snprintf(line, sizeof(line), "#   teacher %.3gB parameters: %s\n", e.teacher_parameters / 1e9, gb(e.teacher_bytes).c_str());
    out += line;
  }
  std::snprintf(line, sizeof(line), "#   activations %s, loss over the vocabulary %s\n#   total about %s\n",
                gb(e.activation_bytes).c_str(), gb(e.logits_bytes).c_str(), gb(e.total_bytes).c_str());
  out += line;
  if (on_gpu) {
    const double seconds = e.flops_per_step / (kGpuPeak * kAssumedMfu * ranks);
    std::snprintf(line, sizeof(line), "#   time per step on H100/H200 at %.0f%% MFU: %.2f s (%.0f tokens per step)\n",
                  kAssumedMfu * 100, seconds, e.tokens_per_step);
  } else {
    std::snprintf(line, sizeof(line), "#   %.3g TFLOP per step (%.0f tokens); CPU time depends on the machine\n",
                  e.flops_per_step / 1e12, e.tokens_per_step);
  }
  out += line;
  return out;
}

}  // namespace qtrain::trainer
