// The pruning schedules and the rounding of kept counts (prune/schedule.h): cubic values of
// Zhu & Gupta at chosen steps, the update steps, and the multiple rounding with its ties.
#include <gtest/gtest.h>

#include "prune/schedule.h"

namespace qtrain::prune {
namespace {

TEST(PruneSchedule, CubicRampTakesZhuGuptaValues) {
  const PruneSchedule s{config::PruneSchedule::gradual, 10, 110, 10};
  EXPECT_EQ(s.progress(0), 0.0);
  EXPECT_EQ(s.progress(10), 0.0);
  EXPECT_DOUBLE_EQ(s.progress(35), 1.0 - 0.75 * 0.75 * 0.75);  // a quarter of the way: 0.578125
  EXPECT_DOUBLE_EQ(s.progress(60), 0.875);                       // half way: 1 - 0.5^3
  EXPECT_DOUBLE_EQ(s.progress(100), 1.0 - 0.001);                // 1 - 0.1^3
  EXPECT_EQ(s.progress(110), 1.0);
  EXPECT_EQ(s.progress(500), 1.0);
  // Fast first, slow near the target: the first interval prunes more than the last.
  EXPECT_GT(s.progress(20) - s.progress(10), 10 * (s.progress(110) - s.progress(100)));
}

TEST(PruneSchedule, GradualUpdatesEveryIntervalAndAtTheEnd) {
  const PruneSchedule s{config::PruneSchedule::gradual, 0, 25, 10};
  std::vector<int64_t> updates;
  for (int64_t step = 0; step <= 40; ++step)
    if (s.is_update_step(step)) updates.push_back(step);
  EXPECT_EQ(updates, (std::vector<int64_t>{10, 20, 25}));  // not 0 (progress 0), not after the end
}

TEST(PruneSchedule, OneShotUpdatesOnceAtItsStart) {
  const PruneSchedule s{config::PruneSchedule::oneshot, 3, 0, 1};
  std::vector<int64_t> updates;
  for (int64_t step = 0; step <= 10; ++step)
    if (s.is_update_step(step)) updates.push_back(step);
  EXPECT_EQ(updates, (std::vector<int64_t>{3}));
  EXPECT_EQ(s.progress(2), 0.0);
  EXPECT_EQ(s.progress(3), 1.0);
}

TEST(KeptUnits, RoundsToTheNearestMultipleWithTiesToTheSmaller) {
  EXPECT_EQ(kept_units(11008, 0.25, 64), 8256);  // 8256 = 129 x 64 exactly
  EXPECT_EQ(kept_units(96, 0.5, 16), 48);
  EXPECT_EQ(kept_units(96, 0.25, 16), 64);       // 72 = 4.5 multiples: a tie, the smaller
  EXPECT_EQ(kept_units(100, 0.25, 16), 80);      // 75 = 4.69 multiples -> 5
  EXPECT_EQ(kept_units(100, 0.3, 16), 64);       // 70 = 4.375 multiples -> 4
  EXPECT_EQ(kept_units(2, 0.25, 1), 1);          // 1.5 kv groups: a tie, the smaller
  EXPECT_EQ(kept_units(8, 0.3, 1), 6);           // 5.6 -> 6
}

TEST(KeptUnits, KeepsAtLeastOneMultipleAndAtMostAll) {
  EXPECT_EQ(kept_units(96, 0.0, 64), 96);    // no sparsity: everything, even if not a multiple
  EXPECT_EQ(kept_units(96, 0.99, 16), 16);   // 0.06 multiples: still one
  EXPECT_EQ(kept_units(120, 0.01, 64), 120); // 1.86 -> 2 multiples = 128 > 120: all
  EXPECT_EQ(kept_multiples(96, 0.99, 16), 0);
  EXPECT_EQ(kept_multiples(2, 0.75, 1), 0);  // 0.5 groups: a tie, none (refused by the trainer)
  EXPECT_EQ(kept_multiples(2, 0.7, 1), 1);
}

}  // namespace
}  // namespace qtrain::prune
