// The job config: YAML text, then --set assignments, as qtrain reads them
// (config::load_config_text). Input: the YAML, and after a NUL byte one assignment per line.
// A qtrain::Error is the expected answer to bad input; anything else (another exception, a
// crash, a sanitizer report, a hang) is a finding.
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "config/load.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const auto nul = input.find('\0');
  const std::string yaml = input.substr(0, nul);
  std::vector<std::string> overrides;
  if (nul != std::string::npos) {
    std::stringstream lines(input.substr(nul + 1));
    for (std::string line; std::getline(lines, line);) overrides.push_back(line);
  }
  try {
    qtrain::config::load_config_text(yaml, "fuzz.yaml", overrides);
  } catch (const qtrain::Error&) {
  }
  return 0;
}
