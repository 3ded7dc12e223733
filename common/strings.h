// Small string helpers shared across the tree (one definition, so that unity batches of
// the core never meet two).
#pragma once
#include <string>

namespace qtrain {

inline bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace qtrain
