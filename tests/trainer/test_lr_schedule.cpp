// Warmup and decay values at the boundaries, against the closed forms.
#include <gtest/gtest.h>

#include <cmath>

#include "trainer/lr_schedule.h"

namespace qtrain::trainer {
namespace {

TEST(LrSchedule, WarmupThenCosineToTheFloor) {
  LrSchedule s{1.0, 0.1, 4, 14, config::LrSchedule::cosine};
  EXPECT_DOUBLE_EQ(s.at(0), 0.25);
  EXPECT_DOUBLE_EQ(s.at(3), 1.0);
  EXPECT_DOUBLE_EQ(s.at(4), 1.0);   // first decay step: still the peak
  EXPECT_DOUBLE_EQ(s.at(13), 0.1);  // last step: the floor
  const double mid = 0.1 + 0.45 * (1 + std::cos(M_PI * 4.0 / 9.0));
  EXPECT_DOUBLE_EQ(s.at(8), mid);
}

TEST(LrSchedule, LinearAndConstant) {
  LrSchedule linear{2.0, 0.5, 0, 11, config::LrSchedule::linear};
  EXPECT_DOUBLE_EQ(linear.at(0), 2.0);
  EXPECT_DOUBLE_EQ(linear.at(5), 1.5);
  EXPECT_DOUBLE_EQ(linear.at(10), 1.0);
  LrSchedule constant{3.0, 0.1, 2, 10, config::LrSchedule::constant};
  EXPECT_DOUBLE_EQ(constant.at(0), 1.5);
  EXPECT_DOUBLE_EQ(constant.at(9), 3.0);
}

}  // namespace
}  // namespace qtrain::trainer
