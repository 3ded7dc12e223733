// Warmup then decay.
#include "trainer/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace qtrain::trainer {

double LrSchedule::at(int64_t step) const {
  if (step < warmup_steps) return lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  const double min_lr = lr * min_lr_ratio;
  const int64_t decay_steps = total_steps - warmup_steps;
  if (kind == config::LrSchedule::constant || decay_steps <= 1) return lr;
  const double progress = std::clamp(static_cast<double>(step - warmup_steps) / static_cast<double>(decay_steps - 1), 0.0, 1.0);
  if (kind == config::LrSchedule::linear) return lr - (lr - min_lr) * progress;
  return min_lr + 0.5 * (lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

LrSchedule lr_schedule(const config::TrainingSection& training) {
  LrSchedule s;
  s.lr = training.lr;
  s.min_lr_ratio = training.min_lr_ratio;
  s.warmup_steps = training.warmup_steps;
  s.total_steps = training.steps;
  s.kind = training.schedule;
  return s;
}

}  // namespace qtrain::trainer
