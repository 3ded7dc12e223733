// The field types a config may hold (bool, int64, double, string, an enum of
// config/choices.h, lists of int64/string, std::optional of those): their names, how each is read from a parsed value with its
// constraints checked, and how each is written back as YAML.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "common/error.h"
#include "config/choices.h"
#include "config/rules.h"

namespace qtrain::config {

// A parsed value, independent of the YAML library: what a YAML node or a --set value holds.
struct RawValue {
  enum class Kind { null, scalar, sequence, mapping };
  Kind kind = Kind::null;
  std::string text;             // scalars: the text as written
  bool quoted = false;          // scalars: written in quotes, so a string for sure
  std::vector<RawValue> items;  // sequences
  int line = -1;                // 1-based line in the file; -1 for --set
};

// Where a value came from, for error messages.
struct Where {
  std::string file;  // config file path, "--set" or the embedded config's name
  std::string key;   // dotted key
  int line = -1;
};

// Builds the one error type with every piece of context filled in.
Error config_error(const Where& where, const std::string& reason, const std::string& expected);

template <class T>
struct Tag {};

inline std::string type_name(Tag<bool>) { return "boolean"; }
inline std::string type_name(Tag<std::int64_t>) { return "integer"; }
inline std::string type_name(Tag<double>) { return "number"; }
inline std::string type_name(Tag<std::string>) { return "string"; }
inline std::string type_name(Tag<std::vector<std::int64_t>>) { return "list of integers"; }
inline std::string type_name(Tag<std::vector<std::string>>) { return "list of strings"; }
template <class E, std::enable_if_t<std::is_enum_v<E>, int> = 0>
std::string type_name(Tag<E>) { return "string"; }  // one of its names
template <class T>
std::string type_name(Tag<std::optional<T>>) { return type_name(Tag<T>{}) + " or null"; }

// What a field type is made of, seeing through list<T> and optional<T>.
template <class T>
struct FieldTraits {
  static constexpr bool list = false;
  static constexpr bool optional = false;
  static constexpr bool numeric = std::is_same_v<T, std::int64_t> || std::is_same_v<T, double>;
  static constexpr bool string = std::is_same_v<T, std::string>;
  static constexpr bool enumerated = std::is_enum_v<T>;
  using Element = T;
};
template <class T>
struct FieldTraits<std::vector<T>> : FieldTraits<T> {
  static constexpr bool list = true;
};
template <class T>
struct FieldTraits<std::optional<T>> : FieldTraits<T> {
  static constexpr bool optional = true;
};

// Scalars: parse raw.text strictly (no "yes"/"on" booleans, no "1.5" integers) and check rules.
void assign_value(const RawValue& raw, bool& out, const Rules& rules, const Where& where);
void assign_value(const RawValue& raw, std::int64_t& out, const Rules& rules, const Where& where);
void assign_value(const RawValue& raw, double& out, const Rules& rules, const Where& where);
void assign_value(const RawValue& raw, std::string& out, const Rules& rules, const Where& where);
// An enum: one of its names (rules.choices holds them: config/schema.h).
template <class E, std::enable_if_t<std::is_enum_v<E>, int> = 0>
void assign_value(const RawValue& raw, E& out, const Rules& rules, const Where& where) {
  std::string name;
  assign_value(raw, name, rules, where);
  for (const auto& [value, text] : EnumNames<E>::values)
    if (name == text) {
      out = value;
      return;
    }
}

template <class T>
void assign_value(const RawValue& raw, std::vector<T>& out, const Rules& rules, const Where& where) {
  if (raw.kind != RawValue::Kind::sequence)
    throw config_error(where, "expected a list", type_name(Tag<std::vector<T>>{}));
  std::vector<T> values(raw.items.size());
  for (size_t i = 0; i < raw.items.size(); ++i) {
    Where item{where.file, where.key + "[" + std::to_string(i) + "]", raw.items[i].line};
    if (item.line < 0) item.line = where.line;
    assign_value(raw.items[i], values[i], rules, item);
  }
  out = std::move(values);
}

template <class T>
void assign_value(const RawValue& raw, std::optional<T>& out, const Rules& rules, const Where& where) {
  if (rules.none_is_null) {  // spelled none; an empty value is a mistake, not a choice
    if (raw.kind == RawValue::Kind::null) throw config_error(where, "missing value", type_name(Tag<T>{}) + " or none");
    if (raw.kind == RawValue::Kind::scalar && !raw.quoted && raw.text == "none") {
      out.reset();
      return;
    }
  } else if (raw.kind == RawValue::Kind::null) {
    out.reset();
    return;
  }
  T value{};
  assign_value(raw, value, rules, where);
  out = std::move(value);
}

// YAML text that reads back to the same value: true, 42, 0.5, runs/demo, "1234", [a, b], null.
std::string format_value(bool value);
std::string format_value(std::int64_t value);
std::string format_value(double value);
std::string format_value(const std::string& value);
template <class E, std::enable_if_t<std::is_enum_v<E>, int> = 0>
std::string format_value(E value) {
  return name_of(value);
}

template <class T>
std::string format_value(const std::vector<T>& values) {
  std::string text = "[";
  for (size_t i = 0; i < values.size(); ++i) text += (i ? ", " : "") + format_value(values[i]);
  return text + "]";
}

template <class T>
std::string format_value(const std::optional<T>& value) {
  return value ? format_value(*value) : "null";
}

}  // namespace qtrain::config
