// How one tensor is quantized, with the vocabulary of compressed-tensors' QuantizationArgs
// (num_bits, type, symmetric, strategy, group_size, dynamic), so that export writes these
// fields as they are. A Scheme holds the args of a linear's weight and input activations.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

namespace qtrain::quant {

// tensor_group: groups of group_size consecutive columns with a per-tensor global scale on
// top (NVFP4); block: one scale per block_rows x block_cols tile of the matrix (FP8_BLOCK).
enum class Strategy { tensor, channel, group, token, tensor_group, block };

struct QuantArgs {
  int num_bits = 8;
  std::string type = "int";  // "int", or "float": FP8 E4M3 (num_bits 8), FP4 E2M1 (num_bits 4)
  bool symmetric = true;
  Strategy strategy = Strategy::tensor;
  int64_t group_size = 0;    // strategy group only
  bool dynamic = false;      // activations: scales computed per batch instead of calibrated
  // compressed-tensors' dynamic "local" (NVFP4 activations): group scales computed per batch
  // relative to a calibrated per-tensor global scale; `dynamic` is false then.
  bool local = false;
  int64_t block_rows = 0, block_cols = 0;  // strategy block: block_structure
  // Int4 group weights under FP8 activations (w4afp8): vLLM's W4A8-FP8 kernel re-encodes the
  // stored group scales as FP8 times an fp32 scale per row (fp8.h's w4a8_fp8_engine_scales)
  // and dequantizes with those; the simulation does the same. Not a compressed-tensors field:
  // it follows from the scheme, as vLLM infers it.
  bool fp8_group_scales = false;

  // The integer grid: [-2^(b-1), 2^(b-1) - 1] (signed) for "int"; FP8 E4M3 spans +-448.
  int64_t qmin() const { return -(int64_t{1} << (num_bits - 1)); }
  int64_t qmax() const { return (int64_t{1} << (num_bits - 1)) - 1; }
  bool is_float() const { return type == "float"; }
  bool is_fp4() const { return is_float() && num_bits == 4; }
  // NVFP4: E4M3 group scales under an fp32 global scale (docs/notes/fp4_formats.md).
  bool has_global_scale() const { return is_fp4() && strategy == Strategy::tensor_group; }
  // MXFP4: E8M0 (power-of-two) group scales, stored as uint8 exponents.
  bool has_power_of_two_scales() const { return is_fp4() && strategy == Strategy::group; }
  // The largest magnitude of the grid: qmax for integers, 448 (E4M3), 6 (E2M1).
  double grid_max() const;
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

// Presets by name, the schemes of compressed-tensors' quant_scheme.py and llm-compressor
// where they have one (docs/quantization.md): w4a16-g128 (int4 symmetric, group 128, weight-only), w4a16-g128-asym,
// w8a16 (int8 per-channel weight-only), w8a8 (int8 per-channel weights, int8 static
// per-tensor activations), w8a8-dynamic (per-token dynamic activations), fp8 (E4M3
// per-channel weights, static per-tensor activations), fp8-dynamic, fp8-block (E4M3 weights
// in 128 x 128 blocks, dynamic per-group-of-128 activations), nvfp4a16 (E2M1 groups of 16
// with E4M3 group scales and a global scale, weight-only), nvfp4 (the same activations, group
// scales at run time under a calibrated global scale), mxfp4a16 and mxfp4 (E2M1 groups of 32
// with E8M0 scales; mxfp4's activations dynamic alike), w4afp8 (int4 group 128 weights, FP8
// per-token dynamic activations: vLLM's W4A8-FP8), none. Integer weight-only presets in
// general: w<bits>a16[-g<N>][-asym] for 2, 3, 4 or 8 bits (per output channel without -g;
// any group size), and w4a8[-g<N>] (int4 weights, int8 per-token dynamic inputs:
// compressed-tensors' W4A8). Throws qtrain::Error for an unknown name.
Scheme preset_scheme(const std::string& name);

}  // namespace qtrain::quant
