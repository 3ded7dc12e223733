// Constraints a config field can declare in its visit() line: Range{lo, hi}, at_least(x),
// greater_than(x), Choices{"a", "b"}, Required{} and NoneIsNull{}; they are checked on every assignment
// and shown in the markdown reference.
#pragma once
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace qtrain::config {

constexpr double kUnbounded = std::numeric_limits<double>::infinity();

// Inclusive [min, max], except that the lower bound is open when exclusive_min is set.
struct Range {
  double min = -kUnbounded;
  double max = kUnbounded;
  bool exclusive_min = false;

  bool contains(double v) const { return (exclusive_min ? v > min : v >= min) && v <= max; }
  std::string describe() const;  // ">= 2", "> 0", "in [0, 1]"
};
inline Range at_least(double min) { return Range{min, kUnbounded, false}; }
inline Range greater_than(double min) { return Range{min, kUnbounded, true}; }

// The allowed values of a string field (and of each element of a list of strings).
struct Choices {
  Choices(std::initializer_list<std::string> allowed) : values(allowed) {}
  std::vector<std::string> values;
  bool contains(const std::string& v) const;
  std::string describe() const;  // "one of auto, fp32, bf16"
};

// The field has no usable default: the file or a --set must give it.
struct Required {};

// An optional field whose absence is spelled `none` (model.teacher: none), and printed so;
// null or an empty value is refused as a missing value.
struct NoneIsNull {};

struct Rules {
  std::optional<Range> range;
  std::optional<Choices> choices;
  bool required = false;
  bool none_is_null = false;
};

inline void add_rule(Rules& rules, const Range& range) { rules.range = range; }
inline void add_rule(Rules& rules, const Choices& choices) { rules.choices = choices; }
inline void add_rule(Rules& rules, const Required&) { rules.required = true; }
inline void add_rule(Rules& rules, const NoneIsNull&) { rules.none_is_null = true; }

template <class... Options>
Rules make_rules(const Options&... options) {
  Rules rules;
  (add_rule(rules, options), ...);
  return rules;
}

}  // namespace qtrain::config
