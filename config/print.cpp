// YAML and markdown renderings of a bound config tree.
#include "config/print.h"

namespace qtrain::config {
namespace {

std::string indent(int depth) { return std::string(2 * depth, ' '); }

// Markdown table cells cannot hold a bare '|'.
std::string escape_cell(const std::string& text) {
  std::string out;
  for (char c : text) out += c == '|' ? std::string("\\|") : std::string(1, c);
  return out;
}

std::string allowed_values(const SchemaEntry& field) {
  if (field.rules.choices) {
    std::string text;
    for (const auto& choice : field.rules.choices->values) text += (text.empty() ? "`" : ", `") + choice + "`";
    return text;
  }
  return field.rules.range ? field.rules.range->describe() : "";
}

std::string table_row(const SchemaEntry& field) {
  std::string default_value = field.rules.required ? "**required**" : "`" + field.format() + "`";
  return "| `" + field.key + "` | " + field.type + " | " + escape_cell(default_value) + " | " +
         escape_cell(allowed_values(field)) + " | " + escape_cell(field.doc) + " |\n";
}

}  // namespace

std::string to_yaml(const Schema& schema, const Sources* sources) {
  std::string out;
  for (const auto& entry : schema.entries()) {
    if (entry.is_section) {
      if (entry.depth == 0) out += (out.empty() ? "" : "\n") + std::string("# ") + entry.doc + "\n";
      out += indent(entry.depth) + entry.name + ":\n";
      continue;
    }
    out += indent(entry.depth) + entry.name + ": " + entry.format();
    if (sources) {
      auto source = sources->find(entry.key);
      if (source != sources->end()) out += "  # " + source->second.describe();
    }
    out += "\n";
  }
  return out;
}

std::string to_yaml(const LoadedConfig& loaded) {
  JobConfig job = loaded.job;  // bind() needs a mutable tree; printing does not change it
  return "# qtrain config: defaults, then " + loaded.origin + ", then --set overrides.\n" +
         "# A comment names where a value was set; values without one are defaults.\n\n" +
         to_yaml(bind(job), &loaded.sources);
}

std::string reference_markdown(const Schema& schema) {
  std::string out;
  for (const auto& section : schema.entries()) {
    if (!section.is_section) continue;
    std::string rows;
    for (const auto& field : schema.entries())
      if (!field.is_section && field.parent == section.key) rows += table_row(field);
    out += "### `" + section.key + "`\n\n" + section.doc + ".\n\n";
    if (!rows.empty()) out += "| Key | Type | Default | Allowed | Description |\n|---|---|---|---|---|\n" + rows + "\n";
  }
  return out;
}

std::string reference_markdown() {
  JobConfig defaults;
  return reference_markdown(bind(defaults));
}

}  // namespace qtrain::config
