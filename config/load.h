// Turns a YAML file and --set overrides into one typed, validated JobConfig, once.
// Precedence: field defaults < the YAML file < each --set in command-line order.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "config/job_config.h"
#include "config/schema.h"
#include "config/source.h"

namespace qtrain::config {

struct LoadedConfig {
  JobConfig job;
  Sources sources;     // where each explicitly set key came from; absent = default
  std::string origin;  // the config file, or kEmbeddedConfigName
};

// Loads `path` (the embedded configs/demo.yaml when empty), applies the overrides
// ("data.seq_len=128"), checks required keys and validate()s. Throws qtrain::Error.
LoadedConfig load_config(const std::optional<std::string>& path, const std::vector<std::string>& overrides);

// Same, from YAML text; `file_name` is what errors name as the file.
LoadedConfig load_config_text(const std::string& yaml, const std::string& file_name,
                              const std::vector<std::string>& overrides = {});

// The steps, for any tree bound with bind(). Each records what it set in `sources`.
void read_yaml(const std::string& yaml, const std::string& file_name, const Schema& schema, Sources& sources);
void apply_override(const std::string& assignment, const Schema& schema, Sources& sources);
void check_required(const Schema& schema, const Sources& sources, const std::string& origin);

}  // namespace qtrain::config
