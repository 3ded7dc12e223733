// Small string helpers shared across the tree (one definition, so that unity batches of
// the core never meet two).
#pragma once
#include <string>

namespace qtrain {

inline bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A file name that stays in its folder: not empty, no '/', not "." or "..", no NUL (names read
// from manifests and indexes, which a damaged or forged file could point elsewhere).
inline bool is_plain_file_name(const std::string& s) {
  return !s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos && s.find('\0') == std::string::npos;
}

}  // namespace qtrain
