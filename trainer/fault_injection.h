// Faults on demand, for the tests of the failure paths (never set in production):
//   QTRAIN_INJECT_NAN_STEPS=3,5    the loss of rank 0 becomes NaN at these steps
//   QTRAIN_INJECT_FAIL=R:S         rank R throws an error at step S
//   QTRAIN_INJECT_HANG=R:S         rank R stops making progress at step S (0: during start-up,
//                                  before the first collective)
// Documented in docs/trainer.md.
#pragma once
#include <cstdint>
#include <set>

namespace qtrain::trainer {

struct FaultInjection {
  std::set<int64_t> nan_steps;
  int fail_rank = -1, hang_rank = -1;
  int64_t fail_step = -1, hang_step = -1;

  static FaultInjection from_environment();
  // Throws or hangs if this rank is told to at `step` (1-based).
  void at_step(int rank, int64_t step) const;
  // The start-up point (step 0): QTRAIN_INJECT_HANG=R:0 and QTRAIN_INJECT_FAIL=R:0.
  void at_start(int rank) const { at_step(rank, 0); }
};

}  // namespace qtrain::trainer
