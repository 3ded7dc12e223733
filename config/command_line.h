// The config-related command line shared by the tools: --config, --set, --dry-run,
// --print-config-reference, --help, --version (Boost.Program_options).
#pragma once
#include <optional>
#include <string>
#include <vector>

namespace qtrain::config {

struct CommandLine {
  std::optional<std::string> config_path;  // empty: the embedded configs/demo.yaml
  std::vector<std::string> overrides;      // "key.sub=value", in command-line order
  bool dry_run = false;
  bool print_reference = false;
  bool help = false;
  bool version = false;
  std::string help_text;  // the option list, for --help
};

// Throws boost::program_options::error on unknown or malformed options (exit status 2
// through qtrain::run_cli).
CommandLine parse_command_line(int argc, const char* const argv[], const std::string& tool);

}  // namespace qtrain::config
