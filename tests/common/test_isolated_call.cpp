// run_isolated (common/isolated_call.h): each way a child can end is told apart, an Error's
// fields cross the process boundary intact, and a hang is cut off at the timeout.
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>
#include <thread>

#include "common/error.h"
#include "common/isolated_call.h"

namespace qtrain {
namespace {

using Kind = IsolatedOutcome::Kind;
constexpr auto kGenerous = std::chrono::seconds(60);

TEST(IsolatedCall, ABodyThatReturnsPasses) {
  EXPECT_EQ(run_isolated([] {}, kGenerous).kind, Kind::passed);
}

TEST(IsolatedCall, AnErrorComesBackWithItsFields) {
  // A message with a colon, digits and a NUL: the encoding is length-prefixed, not split on bytes.
  const std::string reason = std::string("12:bad\0value", 12);
  const auto outcome = run_isolated(
      [&] { throw Error(reason).file("/data/x.h5").key("input_ids").expected("ids in [0, 7)"); }, kGenerous);
  ASSERT_EQ(outcome.kind, Kind::error);
  EXPECT_EQ(outcome.reason, reason);
  EXPECT_EQ(outcome.file, "/data/x.h5");
  EXPECT_EQ(outcome.key, "input_ids");
  EXPECT_EQ(outcome.expected, "ids in [0, 7)");
}

TEST(IsolatedCall, ACrashIsReportedWithItsSignalAndTheParentLives) {
  const auto outcome = run_isolated(
      [] {
        volatile int* null = nullptr;
        *null = 1;  // SIGSEGV, as libhdf5's copy into NULL
      },
      kGenerous);
  ASSERT_EQ(outcome.kind, Kind::crashed);
  EXPECT_NE(outcome.detail.find("signal 11"), std::string::npos) << outcome.detail;
  const auto aborted = run_isolated([] { ::abort(); }, kGenerous);
  ASSERT_EQ(aborted.kind, Kind::crashed);
  EXPECT_NE(aborted.detail.find("signal 6"), std::string::npos) << aborted.detail;
}

TEST(IsolatedCall, AnotherExceptionIsACrashNamingIt) {
  const auto outcome = run_isolated([] { throw std::runtime_error("boom"); }, kGenerous);
  ASSERT_EQ(outcome.kind, Kind::crashed);
  EXPECT_NE(outcome.detail.find("boom"), std::string::npos) << outcome.detail;
}

TEST(IsolatedCall, AHangIsKilledAtTheTimeout) {
  const auto start = std::chrono::steady_clock::now();
  const auto outcome = run_isolated([] { std::this_thread::sleep_for(std::chrono::minutes(10)); },
                                    std::chrono::milliseconds(300));
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(outcome.kind, Kind::timed_out);
  EXPECT_GE(took, std::chrono::milliseconds(300));
  EXPECT_LT(took, std::chrono::seconds(30));
}

}  // namespace
}  // namespace qtrain
