// The schema machinery: field constraints (Range, Choices, Required) and bind(), which walks
// a config tree's visit() methods once and flattens it into a Schema of typed field handles.
// Loading, --set overrides, printing and the markdown reference all work on that Schema.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include "config/field_value.h"
#include "config/rules.h"

namespace qtrain::config {

// One node of the flattened tree: a section (a mapping) or a field (a typed value).
struct SchemaEntry {
  bool is_section = false;
  std::string key;     // dotted path from the root: "data.seq_len"
  std::string name;    // last component: "seq_len"
  std::string parent;  // dotted path of the enclosing section; "" for the root's children
  int depth = 0;       // 0 for the root's children
  std::string doc;

  // Fields only.
  std::string type;  // "integer", "list of strings", ... (type_name<T>())
  Rules rules;
  bool is_list = false;      // a --set value is then parsed as a YAML flow sequence: [a, b]
  bool is_optional = false;  // null is a valid value
  std::function<void(const RawValue&, const std::string& file)> assign;  // parse + check, or throw
  std::function<std::string()> format;  // the current value as YAML text
};

// The flattened tree, in declaration order. It refers to the tree it was bound to, which
// must outlive it.
class Schema {
 public:
  const std::vector<SchemaEntry>& entries() const { return entries_; }
  const SchemaEntry* find(const std::string& key) const {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : &entries_[it->second];
  }
  // Names valid directly under a section ("" = the root), in declaration order.
  std::vector<std::string> child_names(const std::string& parent) const {
    std::vector<std::string> names;
    for (const auto& e : entries_)
      if (e.parent == parent) names.push_back(e.name);
    return names;
  }
  void add(SchemaEntry entry) {
    index_[entry.key] = entries_.size();
    entries_.push_back(std::move(entry));
  }

 private:
  std::vector<SchemaEntry> entries_;
  std::map<std::string, size_t> index_;
};

// The visitor every section's `template <class V> void visit(V& v)` is called with.
class Binder {
 public:
  Binder(Schema& schema, std::string prefix, int depth)
      : schema_(schema), prefix_(std::move(prefix)), depth_(depth) {}

  template <class T, class... Options>
  void field(const char* name, T& value, const char* doc, const Options&... options) {
    static_assert(!(std::is_same_v<Options, Range> || ...) || FieldTraits<T>::numeric,
                  "Range applies to integer and number fields");
    static_assert(!(std::is_same_v<Options, Choices> || ...) || FieldTraits<T>::string,
                  "Choices applies to string fields (an enum field's choices are its names)");
    SchemaEntry e = make_entry(name, doc, false);
    e.type = type_name(Tag<T>{});
    e.rules = make_rules(options...);
    if constexpr (FieldTraits<T>::enumerated) {
      Choices names{};
      names.values = names_of<typename FieldTraits<T>::Element>();
      e.rules.choices = names;
    }
    e.is_list = FieldTraits<T>::list;
    e.is_optional = FieldTraits<T>::optional;
    e.assign = [&value, rules = e.rules, key = e.key](const RawValue& raw, const std::string& file) {
      assign_value(raw, value, rules, Where{file, key, raw.line});
    };
    e.format = [&value] { return format_value(value); };
    if constexpr (std::is_same_v<T, std::optional<std::string>>) {
      // null prints as none, and a string that reads "none" in quotes, to read back the same.
      if (e.rules.none_is_null) e.type = type_name(Tag<std::string>{}) + " or none";
      if (e.rules.none_is_null)
        e.format = [&value] { return !value ? std::string("none") : *value == "none" ? "\"none\"" : format_value(*value); };
    } else {
      static_assert(!(std::is_same_v<Options, NoneIsNull> || ...), "NoneIsNull applies to optional strings");
    }
    schema_.add(std::move(e));
  }

  template <class Section>
  void section(const char* name, Section& sub, const char* doc) {
    SchemaEntry e = make_entry(name, doc, true);
    std::string key = e.key;
    schema_.add(std::move(e));
    Binder child(schema_, key, depth_ + 1);
    sub.visit(child);
  }

 private:
  SchemaEntry make_entry(const char* name, const char* doc, bool is_section) const {
    SchemaEntry e;
    e.is_section = is_section;
    e.name = name;
    e.key = prefix_.empty() ? e.name : prefix_ + "." + e.name;
    e.parent = prefix_;
    e.depth = depth_;
    e.doc = doc;
    return e;
  }

  Schema& schema_;
  std::string prefix_;
  int depth_;
};

// Flattens `root` (any struct with a visit() template) into a Schema that refers to it.
template <class Root>
Schema bind(Root& root) {
  Schema schema;
  Binder binder(schema, "", 0);
  root.visit(binder);
  return schema;
}

}  // namespace qtrain::config
