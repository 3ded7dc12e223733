// FP4 E2M1 (the element type of NVFP4 and MXFP4: no infinities or NaN, values 0, ±0.5, ±1,
// ±1.5, ±2, ±3, ±4, ±6) and its two scale schemes, as compressed-tensors defines them
// (docs/notes/fp4_formats.md): the one reference of this arithmetic, in fp32 on every
// LibTorch version (1.13 has no float8 or float4 types). Issue 17 builds the fake quant,
// the kernels and the export on it.
#pragma once
#include <torch/torch.h>

namespace qtrain::quant {

constexpr double kFp4E2M1Max = 6.0;
constexpr int64_t kNvfp4GroupSize = 16;
constexpr int64_t kMxfp4GroupSize = 32;

// x clamped to ±6 and rounded to the nearest E2M1 value, ties to the even code (0.25 -> 0,
// 0.75 -> 1, 2.5 -> 2, 5 -> 4: compressed-tensors' cast_to_fp4 intervals); fp32.
torch::Tensor round_to_fp4_e2m1(const torch::Tensor& x);
// fp32 values on the E2M1 grid -> uint8 codes: bit 3 the sign (set for -0 too, as
// torch.signbit), bits 0-2 the magnitude's index in {0, 0.5, 1, 1.5, 2, 3, 4, 6}.
torch::Tensor encode_fp4_e2m1(const torch::Tensor& grid_values);
torch::Tensor decode_fp4_e2m1(const torch::Tensor& codes);  // -> fp32
// Codes [rows, cols] (cols even) -> uint8 [rows, cols / 2], two per byte, the even column in
// the low nibble (compressed-tensors' pack_fp4_to_uint8; vLLM's weight_packed).
torch::Tensor pack_fp4(const torch::Tensor& codes);
torch::Tensor unpack_fp4(const torch::Tensor& packed);  // -> uint8 codes [rows, 2 * cols]

// NVFP4: the per-tensor global scale from the tensor's absmax, 448 * 6 / absmax in fp32 ([1],
// evaluated as reciprocal(absmax) * 2688, bit for bit as compressed-tensors;
// a multiplier, compressed-tensors' generate_gparam; where that overflows, for a tensor of
// zeros, the largest finite float instead of inf), and the E4M3 group scales from each
// group's absmax: global * absmax / 6, clamped to 448 and rounded onto the E4M3 grid, 0 -> 0.125
// (calculate_qparams). Both fp32. A group's effective scale is group_scale / global_scale.
torch::Tensor nvfp4_global_scale(const torch::Tensor& tensor_absmax);
torch::Tensor nvfp4_group_scales(const torch::Tensor& group_absmax, const torch::Tensor& global_scale);

// MXFP4: the E8M0 exponent of each group (uint8, scale 2^(e - 127)) from its absmax: the
// absmax in bf16 rounded to a power of two p by its bits (compressed-tensors'
// round_to_power_2), then e = 127 + log2(p) - 2 (6 = 1.5 * 2^2), clamped to [0, 255]; 0 for
// a group of zeros.
torch::Tensor mxfp4_scale_exponents(const torch::Tensor& group_absmax);
torch::Tensor mxfp4_scales(const torch::Tensor& exponents);  // -> fp32 2^(e - 127)

}  // namespace qtrain::quant
