// When the masks grow and to what size. One-shot: the target at start_step. Gradual: the
// cubic schedule of Zhu & Gupta 2017 ("To prune, or not to prune"), from 0 at start_step to
// the target s_f at end_step, updated every every_steps:
//   s(t) = s_f * (1 - (1 - (t - start) / (end - start))^3),  start <= t <= end,
// which prunes fast while many redundant units remain and slowly near the target. Steps
// count completed optimizer steps (t = 0: before the first step). Kept counts are rounded
// (kept_units) so that every intermediate size is tensor-core friendly as well.
#pragma once
#include <cstdint>

#include "config/choices.h"

namespace qtrain::prune {

struct PruneSchedule {
  config::PruneSchedule kind = config::PruneSchedule::oneshot;
  int64_t start_step = 0, end_step = 0, every_steps = 1;

  // Whether the masks are recomputed after `step` optimizer steps.
  bool is_update_step(int64_t step) const;
  // Fraction of the target sparsity in force after `step` steps, in [0, 1].
  double progress(int64_t step) const;
};

// Multiples of `multiple` nearest to total * (1 - sparsity), a tie going to the smaller
// (more pruning); may be 0.
int64_t kept_multiples(int64_t total, double sparsity, int64_t multiple);

// Units kept of `total` at `sparsity`: kept_multiples(..) * multiple, at least one multiple
// and at most `total`; sparsity 0 keeps `total`.
int64_t kept_units(int64_t total, double sparsity, int64_t multiple);

}  // namespace qtrain::prune
