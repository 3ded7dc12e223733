// YAML (yaml-cpp) and --set parsing onto a bound Schema; the only file that sees yaml-cpp.
#include "config/load.h"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <set>
#include <sstream>

#include "config/embedded.h"
#include "config/suggest.h"
#include "config/validate.h"

namespace qtrain::config {
namespace {

const char* const kOverrideFile = "--set";

std::string join_names(const std::vector<std::string>& names) {
  std::string text;
  for (size_t i = 0; i < names.size(); ++i) text += (i ? ", " : "") + names[i];
  return text;
}

std::string dotted(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

Error unknown_key(const Schema& schema, const std::string& parent, const std::string& name, const Where& where) {
  std::vector<std::string> names = schema.child_names(parent);
  std::string reason = "unknown key";
  std::string suggestion = closest_match(name, names);
  if (!suggestion.empty()) reason += "; did you mean '" + suggestion + "'?";
  return config_error(where, reason, "one of " + join_names(names));
}

// Bounds on what one value may expand to: yaml-cpp shares aliased nodes, so a recursive
// alias (`a: &a [*a]`) is a cycle and a "billion laughs" document is exponentially many values
// once walked; both are refused instead of overflowing the stack or memory.
constexpr int kMaxDepth = 32;
constexpr int64_t kMaxValues = 100000;

struct WalkBudget {
  std::vector<YAML::Node> ancestors;
  int64_t values = 0;
};

RawValue to_raw(const YAML::Node& node, WalkBudget& budget, const Where& where) {
  for (const auto& ancestor : budget.ancestors)
    if (ancestor.is(node)) throw config_error(where, "the value contains itself (a recursive YAML alias)", "a finite value");
  if (static_cast<int>(budget.ancestors.size()) >= kMaxDepth)
    throw config_error(where, "the value is nested deeper than " + std::to_string(kMaxDepth) + " levels",
                       "a value nested at most " + std::to_string(kMaxDepth) + " levels");
  if (++budget.values > kMaxValues)
    throw config_error(where, "the value expands to more than " + std::to_string(kMaxValues) + " items (aliases repeated?)",
                       "at most " + std::to_string(kMaxValues) + " items");
  RawValue raw;
  if (!node.Mark().is_null()) raw.line = node.Mark().line + 1;
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      raw.kind = RawValue::Kind::scalar;
      raw.text = node.Scalar();
      raw.quoted = node.Tag() == "!";  // yaml-cpp tags quoted scalars "!", plain ones "?"
      break;
    case YAML::NodeType::Sequence:
      raw.kind = RawValue::Kind::sequence;
      budget.ancestors.push_back(node);
      for (const auto& item : node) raw.items.push_back(to_raw(item, budget, where));
      budget.ancestors.pop_back();
      break;
    case YAML::NodeType::Map:
      raw.kind = RawValue::Kind::mapping;
      break;
    default:
      raw.kind = RawValue::Kind::null;
  }
  return raw;
}

RawValue to_raw(const YAML::Node& node, const Where& where) {
  WalkBudget budget;
  return to_raw(node, budget, where);
}

YAML::Node parse_yaml(const std::string& text, const std::string& file_name, const std::string& key) {
  try {
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {  // ParserException, and any a newer yaml-cpp adds
    Where where{file_name, key, e.mark.is_null() ? -1 : e.mark.line + 1};
    throw config_error(where, "malformed YAML: " + e.msg, "well-formed YAML");
  }
}

void read_mapping(const YAML::Node& map, const std::string& prefix, const std::string& file_name,
                  const Schema& schema, Sources& sources) {
  std::set<std::string> seen;
  for (const auto& item : map) {
    const int line = item.first.Mark().line + 1;
    if (!item.first.IsScalar())
      throw config_error({file_name, prefix, line}, "a key must be a plain name",
                         "one of " + join_names(schema.child_names(prefix)));
    const std::string key = dotted(prefix, item.first.Scalar());
    const SchemaEntry* entry = schema.find(key);
    if (!entry || entry->parent != prefix) throw unknown_key(schema, prefix, item.first.Scalar(), {file_name, key, line});
    if (!seen.insert(key).second)
      throw config_error({file_name, key, line}, "duplicate key", "each key at most once per mapping");
    sources[key] = Source{file_name, line};
    if (!entry->is_section) {
      RawValue raw = to_raw(item.second, {file_name, key, line});
      raw.line = line;  // errors point at the key's line, also for empty values
      entry->assign(raw, file_name);
    } else if (item.second.IsMap()) {
      read_mapping(item.second, key, file_name, schema, sources);
    } else if (!item.second.IsNull()) {
      throw config_error({file_name, key, line}, "expected a mapping",
                         "a mapping with keys " + join_names(schema.child_names(key)));
    }
  }
}

// Finds the field an override key names, or throws with a suggestion at the first bad part.
const SchemaEntry& resolve_override_key(const Schema& schema, const std::string& key) {
  std::string prefix;
  std::stringstream parts(key);
  std::string part;
  const SchemaEntry* entry = nullptr;
  while (std::getline(parts, part, '.')) {
    if (entry && !entry->is_section)
      throw config_error({kOverrideFile, key, -1}, "'" + entry->key + "' is a field, not a section", entry->type);
    entry = schema.find(dotted(prefix, part));
    if (!entry || entry->parent != prefix) throw unknown_key(schema, prefix, part, {kOverrideFile, key, -1});
    prefix = entry->key;
  }
  if (!entry) throw config_error({kOverrideFile, key, -1}, "empty key", "key=value, e.g. data.seq_len=128");
  if (entry->is_section)
    throw config_error({kOverrideFile, key, -1}, "is a section, not a field",
                       "one of its keys: " + join_names(schema.child_names(entry->key)));
  return *entry;
}

// A --set value is taken verbatim for scalars; lists are YAML flow sequences: [a, b].
RawValue override_value(const SchemaEntry& entry, const std::string& text, const std::string& key) {
  if (entry.is_list) return to_raw(parse_yaml(text, kOverrideFile, key), {kOverrideFile, key, -1});
  RawValue raw;
  if (entry.is_optional && (text == "null" || text == "~")) return raw;
  raw.kind = RawValue::Kind::scalar;
  raw.text = text;
  return raw;
}

// A config is a page of YAML; a file of more than this is not one (and would take the parser
// long to refuse).
constexpr std::streamoff kMaxConfigBytes = 1 << 20;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw config_error({path, "", -1}, "cannot open the config file", "a readable YAML file");
  in.seekg(0, std::ios::end);
  const auto size = in.tellg();
  in.seekg(0, std::ios::beg);
  if (size > kMaxConfigBytes)
    throw config_error({path, "", -1}, "the config file has " + std::to_string(static_cast<long long>(size)) + " bytes",
                       "a YAML file of at most 1 MiB");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

void read_yaml(const std::string& yaml, const std::string& file_name, const Schema& schema, Sources& sources) {
  YAML::Node root = parse_yaml(yaml, file_name, "");
  if (root.IsNull()) return;
  if (!root.IsMap())
    throw config_error({file_name, "", root.Mark().line + 1}, "the top level must be a mapping of sections",
                       "a mapping with keys " + join_names(schema.child_names("")));
  read_mapping(root, "", file_name, schema, sources);
}

void apply_override(const std::string& assignment, const Schema& schema, Sources& sources) {
  const size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw config_error({kOverrideFile, assignment, -1}, "malformed override", "key=value, e.g. data.seq_len=128");
  const std::string key = assignment.substr(0, eq);
  const SchemaEntry& entry = resolve_override_key(schema, key);
  entry.assign(override_value(entry, assignment.substr(eq + 1), key), kOverrideFile);
  sources[key] = Source{kOverrideFile, -1};
}

void check_required(const Schema& schema, const Sources& sources, const std::string& origin) {
  for (const auto& entry : schema.entries()) {
    if (entry.is_section || !entry.rules.required || sources.count(entry.key)) continue;
    auto parent = sources.find(entry.parent);  // point at the section that lacks the key
    int line = parent != sources.end() && parent->second.file == origin ? parent->second.line : -1;
    throw config_error({origin, entry.key, line}, "missing required key", entry.type);
  }
}

LoadedConfig load_config_text(const std::string& yaml, const std::string& file_name,
                              const std::vector<std::string>& overrides) {
  LoadedConfig loaded;
  loaded.origin = file_name;
  Schema schema = bind(loaded.job);
  read_yaml(yaml, file_name, schema, loaded.sources);
  for (const auto& assignment : overrides) apply_override(assignment, schema, loaded.sources);
  check_required(schema, loaded.sources, file_name);
  validate(loaded.job, loaded.sources, file_name);
  return loaded;
}

LoadedConfig load_config(const std::optional<std::string>& path, const std::vector<std::string>& overrides) {
  if (!path) return load_config_text(std::string(embedded_default_config()), kEmbeddedConfigName, overrides);
  return load_config_text(read_file(*path), *path, overrides);
}

}  // namespace qtrain::config
