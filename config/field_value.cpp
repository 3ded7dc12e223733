// Strict scalar parsing and YAML formatting for config fields, and the text of constraints.
#include "config/field_value.h"

#include <charconv>
#include <cstdio>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "data/utf8.h"

namespace qtrain::config {

Error config_error(const Where& where, const std::string& reason, const std::string& expected) {
  Error error(reason);
  error.file(where.file).key(where.key).expected(expected);
  if (where.line >= 0) error.line(where.line);
  return error;
}

namespace {

// Shortest text that reads back to the same double, fixed-point for exponents in [-4, 16)
// and scientific outside, as Python's repr: "0.0003", "1e-05", "2", "1e+16".
std::string shortest(double v) {
  char text[64];
  auto end = std::to_chars(text, text + sizeof(text), v, std::chars_format::scientific).ptr;
  const std::string scientific(text, end);
  const auto e = scientific.find('e');
  const int exponent = e == std::string::npos ? 0 : std::stoi(scientific.substr(e + 1));
  if (!std::isfinite(v) || exponent < -4 || exponent >= 16) return scientific;
  end = std::to_chars(text, text + sizeof(text), v, std::chars_format::fixed).ptr;
  return std::string(text, end);
}

std::string format_number(double v) {
  std::string text = shortest(v);
  // Keep a visible decimal point so that a number field never reads like an integer one.
  if (std::isfinite(v) && text.find_first_of(".e") == std::string::npos) text += ".0";
  return text;
}

// A scalar for a bool/int/double field must be plain: "64" in quotes is a string.
const std::string& plain_text(const RawValue& raw, const std::string& type, const Where& where) {
  if (raw.kind == RawValue::Kind::null) throw config_error(where, "missing value", type);
  if (raw.kind != RawValue::Kind::scalar)
    throw config_error(where, raw.kind == RawValue::Kind::sequence ? "got a list" : "got a mapping", type);
  if (raw.quoted) throw config_error(where, "got the quoted string \"" + raw.text + "\"", type);
  return raw.text;
}

void check_range(double v, const std::string& text, const Rules& rules, const Where& where) {
  if (rules.range && !rules.range->contains(v))
    throw config_error(where, "value " + text + " is out of range", rules.range->describe());
}

bool parse_int64(const std::string& text, std::int64_t& out) {
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) return false;
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (errno == ERANGE || end != text.c_str() + text.size()) return false;
  out = v;
  return true;
}

bool parse_double(const std::string& text, double& out) {
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) return false;
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || !std::isfinite(v)) return false;
  out = v;
  return true;
}

// A string that YAML reads back as the same string without quotes.
bool is_plain_string(const std::string& s) {
  if (s.empty() || s == "null" || s == "Null" || s == "NULL" || s == "true" || s == "false" ||
      s == "True" || s == "False" || s == "TRUE" || s == "FALSE")
    return false;
  double number = 0;
  if (parse_double(s, number)) return false;
  const std::string first_ok = "_./";
  if (!std::isalnum(static_cast<unsigned char>(s[0])) && first_ok.find(s[0]) == std::string::npos) return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && std::string("_./+-").find(c) == std::string::npos)
      return false;
  return true;
}

}  // namespace

std::string Range::describe() const {
  bool has_min = std::isfinite(min), has_max = std::isfinite(max);
  if (has_min && has_max)
    return std::string("in ") + (exclusive_min ? "(" : "[") + shortest(min) + ", " + shortest(max) + "]";
  if (has_min) return std::string(exclusive_min ? ">" : ">=") + " " + shortest(min);
  if (has_max) return "<= " + shortest(max);
  return "any";
}

bool Choices::contains(const std::string& v) const {
  for (const auto& c : values)
    if (c == v) return true;
  return false;
}

std::string Choices::describe() const {
  std::string text = "one of ";
  for (size_t i = 0; i < values.size(); ++i) text += (i ? ", " : "") + values[i];
  return text;
}

void assign_value(const RawValue& raw, bool& out, const Rules&, const Where& where) {
  const std::string& text = plain_text(raw, "boolean (true or false)", where);
  if (text == "true" || text == "True" || text == "TRUE") {
    out = true;
  } else if (text == "false" || text == "False" || text == "FALSE") {
    out = false;
  } else {
    throw config_error(where, "invalid value '" + text + "'", "boolean (true or false)");
  }
}

void assign_value(const RawValue& raw, std::int64_t& out, const Rules& rules, const Where& where) {
  const std::string& text = plain_text(raw, "integer", where);
  std::int64_t v = 0;
  if (!parse_int64(text, v)) throw config_error(where, "invalid value '" + text + "'", "integer");
  check_range(static_cast<double>(v), text, rules, where);
  out = v;
}

void assign_value(const RawValue& raw, double& out, const Rules& rules, const Where& where) {
  const std::string& text = plain_text(raw, "number", where);
  double v = 0;
  if (!parse_double(text, v)) throw config_error(where, "invalid value '" + text + "'", "number");
  check_range(v, text, rules, where);
  out = v;
}

void assign_value(const RawValue& raw, std::string& out, const Rules& rules, const Where& where) {
  if (raw.kind == RawValue::Kind::null) throw config_error(where, "missing value", "string");
  if (raw.kind != RawValue::Kind::scalar)
    throw config_error(where, raw.kind == RawValue::Kind::sequence ? "got a list" : "got a mapping", "string");
  // Strings travel into JSON (results.json, checkpoints' trainer_state.json), which holds
  // UTF-8 only: invalid bytes are refused here, with the key, not by the JSON writer later.
  if (!data::utf8::is_valid(raw.text)) throw config_error(where, "the text is not valid UTF-8", "a UTF-8 string");
  if (rules.choices && !rules.choices->contains(raw.text))
    throw config_error(where, "invalid choice '" + raw.text + "'", rules.choices->describe());
  out = raw.text;
}

std::string format_value(bool value) { return value ? "true" : "false"; }
std::string format_value(std::int64_t value) { return std::to_string(value); }
std::string format_value(double value) { return format_number(value); }

std::string format_value(const std::string& value) {
  if (is_plain_string(value)) return value;
  std::string quoted = "\"";
  for (char c : value) {
    if (c == '"' || c == '\\') {
      quoted += '\\';
      quoted += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char escape[8];
      std::snprintf(escape, sizeof(escape), "\\x%02x", static_cast<unsigned char>(c));
      quoted += escape;
    } else {
      quoted += c;
    }
  }
  return quoted + "\"";
}

}  // namespace qtrain::config
