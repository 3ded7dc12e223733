// Provenance of config values: which file (or --set) and line set each key. Keys that are
// absent kept their default. Used for error messages and the dry-run listing.
#pragma once
#include <map>
#include <string>

namespace qtrain::config {

struct Source {
  std::string file;  // config file path, "--set" or the embedded config's name
  int line = -1;     // 1-based; -1 for --set

  std::string describe() const { return line >= 0 ? file + ":" + std::to_string(line) : file; }
};

// Dotted key ("data.seq_len", also sections: "data") -> where it was set.
using Sources = std::map<std::string, Source>;

}  // namespace qtrain::config
