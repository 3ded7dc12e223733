// Ends the whole job when a rank stops making progress (a peer died inside a collective, a
// deadlock): a thread checks that beat() was called within `timeout_s`, else it prints
// what the rank was doing and exits the process, which makes mpirun end the other ranks.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace qtrain::trainer {

class Watchdog {
 public:
  Watchdog(double timeout_s, std::string what);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;
  // Marks progress; `what` names the current phase for the message.
  void beat(const std::string& what);

 private:
  void run();
  double timeout_s_;
  std::mutex mutex_;
  std::condition_variable stop_;
  bool stopping_ = false;
  std::string what_;
  std::chrono::steady_clock::time_point last_;
  std::thread thread_;
};

}  // namespace qtrain::trainer
