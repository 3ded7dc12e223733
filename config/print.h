// Writes a config back out: as YAML for --dry-run (every field, with where each non-default
// value came from) and as the markdown key reference for --print-config-reference.
#pragma once
#include <string>

#include "config/load.h"
#include "config/schema.h"
#include "config/source.h"

namespace qtrain::config {

// Every field of the bound tree as YAML that load_config reads back to the same values.
// With `sources`, each explicitly set value gets a "# file:line" comment.
std::string to_yaml(const Schema& schema, const Sources* sources = nullptr);
std::string to_yaml(const LoadedConfig& loaded);

// One markdown table per section: key, type, default, allowed values, description.
std::string reference_markdown(const Schema& schema);
std::string reference_markdown();  // of JobConfig, with its defaults

}  // namespace qtrain::config
