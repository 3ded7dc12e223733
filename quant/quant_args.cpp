// Presets and printing of quantization args.
#include "quant/quant_args.h"

#include "common/error.h"

namespace qtrain::quant {

std::string to_string(Strategy s) {
  switch (s) {
    case Strategy::tensor: return "tensor";
    case Strategy::channel: return "channel";
    case Strategy::group: return "group";
    case Strategy::token: return "token";
  }
  return "tensor";
}

Strategy strategy_from_string(const std::string& s) {
  if (s == "tensor") return Strategy::tensor;
  if (s == "channel") return Strategy::channel;
  if (s == "group") return Strategy::group;
  if (s == "token") return Strategy::token;
  throw Error("unknown quantization strategy '" + s + "'").expected("tensor|channel|group|token");
}

std::string QuantArgs::describe() const {
  std::string d = (is_float() ? "fp" : "int") + std::to_string(num_bits) + (symmetric ? " sym " : " asym ") +
                  to_string(strategy);
  if (strategy == Strategy::group) d += std::to_string(group_size);
  if (dynamic) d += " dynamic";
  return d;
}

bool QuantArgs::operator==(const QuantArgs& o) const {
  return num_bits == o.num_bits && type == o.type && symmetric == o.symmetric && strategy == o.strategy &&
         group_size == o.group_size && dynamic == o.dynamic;
}

namespace {
QuantArgs int_weights(int bits, Strategy strategy, int64_t group, bool symmetric) {
  QuantArgs a;
  a.num_bits = bits;
  a.strategy = strategy;
  a.group_size = group;
  a.symmetric = symmetric;
  return a;
}
QuantArgs activations(const std::string& type, Strategy strategy, bool dynamic) {
  QuantArgs a;
  a.type = type;
  a.strategy = strategy;
  a.dynamic = dynamic;
  return a;
}
}  // namespace

Scheme preset_scheme(const std::string& name) {
  Scheme s;
  s.name = name;
  if (name == "none") return s;
  if (name.rfind("w4a16-g", 0) == 0) {
    const bool asym = name.size() > 5 && name.compare(name.size() - 5, 5, "-asym") == 0;
    const auto digits = name.substr(7, name.size() - 7 - (asym ? 5 : 0));
    int64_t group = 0;
    try {
      group = std::stoll(digits);
    } catch (const std::exception&) {
    }
    if (group <= 0 || std::to_string(group) != digits)
      throw Error("bad group size in scheme '" + name + "'").expected("w4a16-g<group>[-asym], e.g. w4a16-g128");
    s.weights = int_weights(4, Strategy::group, group, !asym);
    return s;
  }
  if (name == "w8a16") {
    s.weights = int_weights(8, Strategy::channel, 0, true);
    return s;
  }
  if (name == "w8a8" || name == "w8a8-dynamic") {
    s.weights = int_weights(8, Strategy::channel, 0, true);
    s.input_activations = name == "w8a8" ? activations("int", Strategy::tensor, false)
                                         : activations("int", Strategy::token, true);
    return s;
  }
  if (name == "fp8" || name == "fp8-dynamic") {
    s.weights = activations("float", Strategy::channel, false);
    s.input_activations = name == "fp8" ? activations("float", Strategy::tensor, false)
                                        : activations("float", Strategy::token, true);
    return s;
  }
  throw Error("unknown quantization scheme '" + name + "'")
      .expected("none, w4a16-g<N>[-asym], w8a16, w8a8, w8a8-dynamic, fp8, fp8-dynamic");
}

}  // namespace qtrain::quant
