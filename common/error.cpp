// Formats qtrain::Error as "file:line: key 'k': what (expected: e) [rank r]".
#include "common/error.h"

namespace qtrain {

void Error::rebuild() {
  std::string m;
  if (!file_.empty()) {
    m += file_;
    if (line_ >= 0) m += ":" + std::to_string(line_);
    m += ": ";
  }
  if (!key_.empty()) m += "key '" + key_ + "': ";
  m += what_;
  if (!expected_.empty()) m += " (expected: " + expected_ + ")";
  if (rank_ >= 0) m += " [rank " + std::to_string(rank_) + "]";
  message_ = std::move(m);
}

}  // namespace qtrain
