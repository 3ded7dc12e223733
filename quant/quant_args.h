// How one tensor is quantized, with the vocabulary of compressed-tensors' QuantizationArgs
// (num_bits, type, symmetric, strategy, group_size, dynamic), so that export writes these
// fields as they are. A Scheme holds the args of a linear's weight and input activations.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

namespace qtrain::quant {

enum class Strategy { tensor, channel, group, token };

struct QuantArgs {
  int num_bits = 8;
  std::string type = "int";  // "int" or "float" (FP8 E4M3 when num_bits == 8)
  bool symmetric = true;
  Strategy strategy = Strategy::tensor;
  int64_t group_size = 0;    // strategy group only
  bool dynamic = false;      // activations: scales computed per batch instead of calibrated

  // The integer grid: [-2^(b-1), 2^(b-1) - 1] (signed) for "int"; FP8 E4M3 spans +-448.
  int64_t qmin() const { return -(int64_t{1} << (num_bits - 1)); }
  int64_t qmax() const { return (int64_t{1} << (num_bits - 1)) - 1; }
  bool is_float() const { return type == "float"; }
  std::string describe() const;  // "int4 sym group128", "int8 sym tensor static"
  bool operator==(const QuantArgs& o) const;
};

std::string to_string(Strategy s);
Strategy strategy_from_string(const std::string& s);

// The quantization of one linear layer; an absent member stays in floating point.
struct Scheme {
  std::string name;                          // the preset's name, e.g. "w4a16-g128"
  std::optional<QuantArgs> weights;
  std::optional<QuantArgs> input_activations;
  bool quantizes() const { return weights || input_activations; }
};

// Presets by name: w4a16-g128 (int4 symmetric, group 128, weight-only), w4a16-g128-asym,
// w8a16 (int8 per-channel weight-only), w8a8 (int8 per-channel weights, int8 static
// per-tensor activations), w8a8-dynamic (per-token dynamic activations), fp8 (E4M3
// per-channel weights, static per-tensor activations), fp8-dynamic, none. "w4a16-g<N>"
// takes any group size. Throws qtrain::Error for an unknown name.
Scheme preset_scheme(const std::string& name);

}  // namespace qtrain::quant
