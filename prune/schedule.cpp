// The one-shot and cubic schedules, and the rounding of kept counts.
#include "prune/schedule.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace qtrain::prune {

bool PruneSchedule::is_update_step(int64_t step) const {
  if (kind == config::PruneSchedule::oneshot) return step == start_step;
  // At start_step the schedule is still at 0: the first growth comes one interval later.
  if (step <= start_step || step > end_step) return false;
  return (step - start_step) % every_steps == 0 || step == end_step;
}

double PruneSchedule::progress(int64_t step) const {
  if (step < start_step) return 0.0;
  if (kind == config::PruneSchedule::oneshot || step >= end_step) return 1.0;
  const double done = static_cast<double>(step - start_step) / static_cast<double>(end_step - start_step);
  return 1.0 - std::pow(1.0 - done, 3.0);
}

int64_t kept_multiples(int64_t total, double sparsity, int64_t multiple) {
  QT_REQUIRE(total > 0 && multiple > 0, "kept_multiples needs a positive total and multiple");
  const double wanted = static_cast<double>(total) * (1.0 - sparsity) / static_cast<double>(multiple);
  const double below = std::floor(wanted);
  return static_cast<int64_t>(wanted - below > 0.5 ? below + 1 : below);
}

int64_t kept_units(int64_t total, double sparsity, int64_t multiple) {
  if (sparsity <= 0) return total;
  const int64_t kept = std::max<int64_t>(1, kept_multiples(total, sparsity, multiple)) * multiple;
  return std::min(kept, total);
}

}  // namespace qtrain::prune
