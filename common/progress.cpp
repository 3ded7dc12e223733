// Progress bar drawing; redraws are throttled so that hot loops can call update() freely.
#include "common/progress.h"

#include <unistd.h>

#include <cmath>

#include "common/dist.h"

namespace qtrain {

ProgressBar::ProgressBar(std::string label, int64_t total, std::string unit, std::FILE* out, const std::string& mode)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), out_(out) {
  enabled_ = dist::is_main() && mode != "off";
  tty_ = mode == "bar" || (mode == "auto" && ::isatty(::fileno(out_)) != 0);
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

void ProgressBar::update(int64_t done, double rate_amount, const std::string& rate_unit, const std::string& extra) {
  done_ = done;
  amount_ = rate_amount;
  rate_unit_ = rate_unit;
  extra_ = extra;
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  const double since_draw = std::chrono::duration<double>(now - last_draw_).count();
  if (since_draw < (tty_ ? 0.2 : 10.0)) return;
  draw(false);
}

void ProgressBar::finish() {
  if (enabled_) draw(true);
}

void ProgressBar::draw(bool final) {
  last_draw_ = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(last_draw_ - start_).count();
  const double fraction = total_ > 0 ? static_cast<double>(done_) / static_cast<double>(total_) : 1.0;
  const double rate = elapsed > 0 ? amount_ / elapsed : 0.0;
  const int64_t new_work = done_ - first_;
  const double eta = new_work > 0 ? elapsed * static_cast<double>(total_ - done_) / static_cast<double>(new_work) : 0.0;
  std::string line = label_ + " ";
  if (tty_) {
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(std::lround(fraction * kWidth));
    line += "[" + std::string(filled, '#') + std::string(kWidth - filled, '.') + "] ";
  }
  line += std::to_string(done_) + "/" + std::to_string(total_) + " " + unit_;
  if (!rate_unit_.empty()) line += " | " + format_si(rate) + " " + rate_unit_ + "/s";
  line += final ? " | " + format_duration(elapsed) : " | ETA " + format_duration(eta);
  if (!extra_.empty()) line += " | " + extra_;
  if (tty_) std::fprintf(out_, "\r\033[K%s%s", line.c_str(), final ? "\n" : "");
  else std::fprintf(out_, "%s\n", line.c_str());
  std::fflush(out_);
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(std::llround(seconds));
  char text[32];
  if (s >= 3600) std::snprintf(text, sizeof(text), "%lldh%02lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
  else if (s >= 60) std::snprintf(text, sizeof(text), "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
  else std::snprintf(text, sizeof(text), "%llds", (long long)s);
  return text;
}

std::string format_si(double value) {
  const char* suffix[] = {"", "k", "M", "G", "T"};
  int i = 0;
  while (std::fabs(value) >= 1000.0 && i < 4) {
    value /= 1000.0;
    ++i;
  }
  char text[32];
  std::snprintf(text, sizeof(text), i == 0 ? "%.1f%s" : "%.2f%s", value, suffix[i]);
  return text;
}

}  // namespace qtrain
