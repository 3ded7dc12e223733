// Learning rate per step: linear warmup from 0, then cosine, linear or constant decay to
// lr * min_lr_ratio at the last step (as torchtune's / Megatron's warmup-cosine).
#pragma once
#include <cstdint>

#include "config/job_config.h"

namespace qtrain::trainer {

struct LrSchedule {
  double lr = 1e-4;
  double min_lr_ratio = 0.1;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  config::LrSchedule kind = config::LrSchedule::cosine;

  // For the update of optimizer step `step` (0-based): warmup gives lr * (step + 1) / warmup.
  double at(int64_t step) const;
};

// training.lr, min_lr_ratio, warmup_steps, steps and schedule.
LrSchedule lr_schedule(const config::TrainingSection& training);

}  // namespace qtrain::trainer
