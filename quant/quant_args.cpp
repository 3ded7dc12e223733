// Presets and printing of quantization args.
#include "quant/quant_args.h"

#include <regex>

#include "common/error.h"

namespace qtrain::quant {

std::string to_string(Strategy s) {
  switch (s) {
    case Strategy::tensor: return "tensor";
    case Strategy::channel: return "channel";
    case Strategy::group: return "group";
    case Strategy::token: return "token";
    case Strategy::tensor_group: return "tensor_group";
    case Strategy::block: return "block";
  }
  return "tensor";
}

Strategy strategy_from_string(const std::string& s) {
  if (s == "tensor") return Strategy::tensor;
  if (s == "channel") return Strategy::channel;
  if (s == "group") return Strategy::group;
  if (s == "token") return Strategy::token;
  if (s == "tensor_group") return Strategy::tensor_group;
  if (s == "block") return Strategy::block;
  throw Error("unknown quantization strategy '" + s + "'").expected("tensor|channel|group|token|tensor_group|block");
}

double QuantArgs::grid_max() const {
  if (!is_float()) return static_cast<double>(qmax());
  return is_fp4() ? 6.0 : 448.0;
}

std::string QuantArgs::describe() const {
  std::string d = (is_float() ? "fp" : "int") + std::to_string(num_bits) + (symmetric ? " sym " : " asym ") +
                  to_string(strategy);
  if (strategy == Strategy::group || strategy == Strategy::tensor_group) d += std::to_string(group_size);
  if (strategy == Strategy::block) d += std::to_string(block_rows) + "x" + std::to_string(block_cols);
  if (dynamic) d += " dynamic";
  if (local) d += " dynamic-local";
  return d;
}

bool QuantArgs::operator==(const QuantArgs& o) const {
  return num_bits == o.num_bits && type == o.type && symmetric == o.symmetric && strategy == o.strategy &&
         group_size == o.group_size && dynamic == o.dynamic && local == o.local && block_rows == o.block_rows &&
         block_cols == o.block_cols && fp8_group_scales == o.fp8_group_scales;
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
// E2M1 in groups: NVFP4 (tensor_group 16, a global scale) or MXFP4 (group 32, E8M0 scales).
QuantArgs fp4(Strategy strategy, int64_t group) {
  QuantArgs a;
  a.num_bits = 4;
  a.type = "float";
  a.strategy = strategy;
  a.group_size = group;
  return a;
}
}  // namespace

Scheme preset_scheme(const std::string& name) {
  Scheme s;
  s.name = name;
  if (name == "none") return s;
  if (name == "w8a8" || name == "w8a8-dynamic") {
    s.weights = int_weights(8, Strategy::channel, 0, true);
    s.input_activations = name == "w8a8" ? activations("int", Strategy::tensor, false)
                                         : activations("int", Strategy::token, true);
    return s;
  }
  // w<bits>a16[-g<group>][-asym] (weight-only, bits 2, 3, 4 or 8; per output channel without
  // a group) and w4a8[-g<group>] (compressed-tensors' W4A8: int8 per-token dynamic inputs).
  static const std::regex int_preset(R"(^w([2348])a(16|8)(?:-g([0-9]+))?(-asym)?$)");
  std::smatch m;
  if (std::regex_match(name, m, int_preset)) {
    const int bits = std::stoi(m[1].str());
    const bool weight_only = m[2].str() == "16", asym = m[4].matched;
    int64_t group = 0;
    if (m[3].matched) {
      const auto digits = m[3].str();
      if (digits.size() > 6 || digits[0] == '0' || (group = std::stoll(digits)) <= 0)
        throw Error("bad group size in scheme '" + name + "'").expected("w<bits>a16-g<group>, e.g. w4a16-g128");
    }
    if (!weight_only && (bits != 4 || asym))
      throw Error("unknown quantization scheme '" + name + "'").expected("w4a8[-g<group>] (int4 weights, int8 inputs)");
    s.weights = int_weights(bits, group ? Strategy::group : Strategy::channel, group, !asym);
    if (!weight_only) s.input_activations = activations("int", Strategy::token, true);
    return s;
  }
  if (name == "fp8" || name == "fp8-dynamic") {
    s.weights = activations("float", Strategy::channel, false);
    s.input_activations = name == "fp8" ? activations("float", Strategy::tensor, false)
                                        : activations("float", Strategy::token, true);
    return s;
  }
  if (name == "fp8-block") {  // compressed-tensors' FP8_BLOCK
    s.weights = activations("float", Strategy::block, false);
    s.weights->block_rows = s.weights->block_cols = 128;
    s.input_activations = activations("float", Strategy::group, true);
    s.input_activations->group_size = 128;
    return s;
  }
  if (name == "nvfp4a16" || name == "nvfp4") {  // compressed-tensors' NVFP4A16 / NVFP4
    s.weights = fp4(Strategy::tensor_group, 16);
    if (name == "nvfp4") {
      s.input_activations = fp4(Strategy::tensor_group, 16);
      s.input_activations->local = true;
    }
    return s;
  }
  if (name == "mxfp4a16" || name == "mxfp4") {  // compressed-tensors' MXFP4A16 / MXFP4
    s.weights = fp4(Strategy::group, 32);
    if (name == "mxfp4") {
      s.input_activations = fp4(Strategy::group, 32);
      s.input_activations->dynamic = true;
    }
    return s;
  }
  if (name == "w4afp8") {  // llm-compressor's W4AFP8, vLLM's W4A8-FP8 (Hopper)
    s.weights = int_weights(4, Strategy::group, 128, true);
    s.weights->fp8_group_scales = true;
    s.input_activations = activations("float", Strategy::token, true);
    return s;
  }
  throw Error("unknown quantization scheme '" + name + "'")
      .expected("none, w<2|3|4|8>a16[-g<N>][-asym], w4a8[-g<N>], w8a8, w8a8-dynamic, fp8, fp8-dynamic, fp8-block, "
                "nvfp4a16, nvfp4, mxfp4a16, mxfp4, w4afp8");
}

}  // namespace qtrain::quant
