// The watchdog thread.
#include "trainer/watchdog.h"

#include <cstdio>
#include <cstdlib>

#include "common/dist.h"

namespace qtrain::trainer {

Watchdog::Watchdog(double timeout_s, std::string what)
    : timeout_s_(timeout_s), what_(std::move(what)), last_(std::chrono::steady_clock::now()) {
  thread_ = std::thread([this] { run(); });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  stop_.notify_all();
  thread_.join();
}

void Watchdog::beat(const std::string& what) {
  std::lock_guard<std::mutex> lock(mutex_);
  what_ = what;
  last_ = std::chrono::steady_clock::now();
}

void Watchdog::run() {
  const int rank = dist::rank();
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    stop_.wait_for(lock, std::chrono::seconds(1));
    const double idle = std::chrono::duration<double>(std::chrono::steady_clock::now() - last_).count();
    if (!stopping_ && idle > timeout_s_) {
      std::fprintf(stderr,
                   "qtrain: error: rank %d made no progress for %.0f s during %s (parallel.timeout_s = %.0f); "
                   "ending the job\n",
                   rank, idle, what_.c_str(), timeout_s_);
      std::fflush(stderr);
      std::_Exit(3);
    }
  }
}

}  // namespace qtrain::trainer
