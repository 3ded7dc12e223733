// The numbers of the run report's results table (docs/report.md), measured where the run
// already evaluates: the teacher and the student right after PTQ before training, the
// trained (fake-quant) student at the end, the exported checkpoint after export. Rank 0
// rewrites <output_dir>/results.json (docs/formats.md) after each; a resumed run keeps
// what its first start measured.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "config/job_config.h"
#include "eval/perplexity.h"
#include "model/causal_lm.h"
#include "quant/quant_error.h"

namespace qtrain::trainer {

// Perplexity of `model` on data.validation with the eval section's windows (docs/formats.md),
// in eval mode, leaving the model's training mode as it was.
eval::PerplexityResult evaluate_validation(model::CausalLMImpl& model, const config::JobConfig& job);

class RunResults {
 public:
  explicit RunResults(const config::JobConfig& job);

  // Before the first step of a fresh run (all ranks): the teacher's perplexity (when there
  // is one) and the student's as initialised (after PTQ when quantized), on the validation
  // windows; nothing without data.validation.
  void at_start(model::CausalLMImpl* teacher, model::CausalLMImpl& student);
  // All ranks: the perplexity of `model` on the validation windows, recorded as `stage`
  // ("student" at the end, "export" for the loaded export) at `step`; returns it.
  double measure(const std::string& stage, model::CausalLMImpl& model, int64_t step);
  // Rank 0, after writing the export folder `dir`: the folder's size and bits per weight, and
  // the per-layer quantization error of the student's fake-quant weights (quant_error.h).
  void exported(const std::string& dir, const std::vector<quant::LayerQuantError>& errors);
  // The kernel switches in effect (common/kernels.h), as "kernels".
  void kernels(const nlohmann::json& choices);
  // After the training steps, as "memory" (bytes, the largest rank's): the peak so far, the
  // process's baseline before the models were built, and the --dry-run estimate.
  void memory(int64_t peak, int64_t baseline, double estimate);

 private:
  void write() const;

  const config::JobConfig& job_;
  std::string path_;
  nlohmann::json results_;
};

}  // namespace qtrain::trainer
