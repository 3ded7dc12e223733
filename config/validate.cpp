// Cross-field checks of a JobConfig; add a rule here when it involves more than one field.
#include "config/validate.h"

#include "config/field_value.h"

namespace qtrain::config {
namespace {

Where where_set(const Sources& sources, const std::string& origin, const std::string& key) {
  auto it = sources.find(key);
  if (it == sources.end()) return Where{origin, key, -1};
  return Where{it->second.file, key, it->second.line};
}

void validate_data(const DataSection& data, const Sources& sources, const std::string& origin) {
  if (data.global_batch_size % data.micro_batch_size != 0)
    throw config_error(where_set(sources, origin, "data.global_batch_size"),
                       "global_batch_size " + std::to_string(data.global_batch_size) +
                           " is not a multiple of micro_batch_size " + std::to_string(data.micro_batch_size),
                       "a multiple of data.micro_batch_size");
}

void validate_schedule(const TrainingSection& training, const Sources& sources, const std::string& origin) {
  if (training.warmup_steps > training.steps)
    throw config_error(where_set(sources, origin, "training.warmup_steps"),
                       "warmup_steps " + std::to_string(training.warmup_steps) + " exceeds steps " +
                           std::to_string(training.steps),
                       "<= training.steps");
}

void validate_prune(const PruneSection& prune, const JobConfig& job, const Sources& sources, const std::string& origin) {
  if (!prune.enabled()) return;
  const int64_t steps = job.training.steps;
  // Layers after the last hidden-loss pair get no gradient from the hidden loss alone.
  if (prune.importance == Importance::taylor && job.distill.alpha == 0 && job.distill.beta == 0)
    throw config_error(where_set(sources, origin, "prune.importance"),
                       "taylor importance needs the gradient of an output loss, but distill.alpha and distill.beta are 0",
                       "activation or magnitude importance, or distill.alpha > 0 or distill.beta > 0");
  if (prune.start_step >= steps)
    throw config_error(where_set(sources, origin, "prune.start_step"),
                       "start_step " + std::to_string(prune.start_step) + " leaves no training step after it",
                       "< training.steps (" + std::to_string(steps) + ")");
  if (prune.schedule == PruneSchedule::gradual && (prune.end_step <= prune.start_step || prune.end_step > steps))
    throw config_error(where_set(sources, origin, "prune.end_step"),
                       "end_step " + std::to_string(prune.end_step) + " does not lie after start_step " +
                           std::to_string(prune.start_step) + " within the run",
                       "in (prune.start_step, training.steps]");
}

}  // namespace

void validate(const JobConfig& job, const Sources& sources, const std::string& origin) {
  validate_data(job.data, sources, origin);
  validate_schedule(job.training, sources, origin);
  validate_prune(job.prune, job, sources, origin);
  if (job.eval.every_steps > 0 && job.data.validation.empty())
    throw config_error(where_set(sources, origin, "eval.every_steps"),
                       "periodic evaluation needs validation tokens, but data.validation is empty",
                       "0, or a data.validation file");
  const auto& d = job.distill;
  if (d.alpha == 0 && d.beta == 0 && d.gamma == 0)
    throw config_error(where_set(sources, origin, "distill.beta"), "alpha, beta and gamma are all 0, so the loss is 0",
                       "alpha > 0, beta > 0 or gamma > 0");
  if (!job.model.teacher && (d.beta > 0 || d.gamma > 0))
    throw config_error(where_set(sources, origin, "model.teacher"),
                       "no teacher, but the loss has teacher terms (distill.beta or distill.gamma > 0)",
                       "a teacher checkpoint folder, or distill.beta = distill.gamma = 0");
  if (!job.model.teacher && job.model.student_source() == StudentSource::copy)
    throw config_error(where_set(sources, origin, "model.student"), "a copy of the teacher needs a teacher",
                       "config or a checkpoint folder");
  if (d.student_layers.size() != d.teacher_layers.size())
    throw config_error(where_set(sources, origin, "distill.teacher_layers"),
                       std::to_string(d.teacher_layers.size()) + " teacher layers for " +
                           std::to_string(d.student_layers.size()) + " student layers",
                       "as many entries as distill.student_layers");
  if (d.gamma > 0 && d.student_layers.empty())
    throw config_error(where_set(sources, origin, "distill.student_layers"),
                       "gamma > 0 but no layer pairs are given", "a non-empty list");
}

}  // namespace qtrain::config
