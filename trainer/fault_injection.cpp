// Parsing of the QTRAIN_INJECT_* variables and the injected faults.
#include "trainer/fault_injection.h"

#include <chrono>
#include <cstdlib>
#include <sstream>
#include <string>
#include <thread>

#include "common/error.h"

namespace qtrain::trainer {

namespace {
// "R:S" -> (R, S); unset -> (-1, -1).
std::pair<int, int64_t> rank_step(const char* name) {
  const char* env = std::getenv(name);
  if (!env) return {-1, -1};
  const std::string text(env);
  const auto colon = text.find(':');
  if (colon == std::string::npos) throw Error("expected RANK:STEP, got '" + text + "'").key(name);
  return {std::stoi(text.substr(0, colon)), std::stoll(text.substr(colon + 1))};
}
}  // namespace

FaultInjection FaultInjection::from_environment() {
  FaultInjection f;
  if (const char* env = std::getenv("QTRAIN_INJECT_NAN_STEPS")) {
    std::stringstream list(env);
    std::string item;
    while (std::getline(list, item, ',')) f.nan_steps.insert(std::stoll(item));
  }
  std::tie(f.fail_rank, f.fail_step) = rank_step("QTRAIN_INJECT_FAIL");
  std::tie(f.hang_rank, f.hang_step) = rank_step("QTRAIN_INJECT_HANG");
  return f;
}

void FaultInjection::at_step(int rank, int64_t step) const {
  if (rank == fail_rank && step == fail_step)
    throw Error("injected failure at step " + std::to_string(step)).key("QTRAIN_INJECT_FAIL");
  if (rank == hang_rank && step == hang_step)
    while (true) std::this_thread::sleep_for(std::chrono::seconds(1));
}

}  // namespace qtrain::trainer
