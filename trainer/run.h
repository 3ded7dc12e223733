// The training job: builds models, data, optimizer and communication from the job config,
// runs the steps, evaluates, logs, checkpoints and resumes. Returns the exit status: 0, or
// 128 + signal after a checkpoint when SIGTERM/SIGINT stopped the run early.
#pragma once
#include <string>

#include "config/job_config.h"

namespace qtrain::trainer {

int run_training(const config::JobConfig& job, const std::string& resolved_config_yaml);

}  // namespace qtrain::trainer
