// Progress of long work on rank 0: a redrawn bar with rate and ETA on a terminal, plain
// lines at most every few seconds otherwise (logs, CI). Other ranks stay silent.
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace qtrain {

class ProgressBar {
 public:
  // `total` units of work named `unit` ("windows", "steps"). `mode`: auto (a bar on a
  // terminal, plain lines otherwise), bar, lines or off.
  ProgressBar(std::string label, int64_t total, std::string unit, std::FILE* out = stderr,
              const std::string& mode = "auto");
  // Continues from `done` units (a resumed run): rates and ETA count only new work.
  void set_start(int64_t done) { first_ = done; done_ = done; }
  // Sets the done count; `rate_amount` is the cumulative amount for the rate (tokens, bytes).
  // `extra` is appended to the line ("loss 2.31").
  void update(int64_t done, double rate_amount, const std::string& rate_unit, const std::string& extra = "");
  // Draws the final state and ends the line.
  void finish();
  bool enabled() const { return enabled_; }

 private:
  void draw(bool final);
  std::string label_, unit_, rate_unit_, extra_;
  int64_t total_, done_ = 0, first_ = 0;
  double amount_ = 0;
  std::FILE* out_;
  bool enabled_, tty_;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

// "1h02m", "3m07s", "12s".
std::string format_duration(double seconds);
// "12.3k", "4.56M".
std::string format_si(double value);

}  // namespace qtrain
