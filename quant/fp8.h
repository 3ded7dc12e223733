// FP8 E4M3 (OCP "fn" variant: no infinities, max 448) bit encoding of values already on its
// grid (quant_math.h round_to_fp8_e4m3), as raw bytes: LibTorch 1.13 has no float8 type.
#pragma once
#include <torch/torch.h>

namespace qtrain::quant {

// fp32 values on the E4M3 grid -> uint8 codes (sign | exponent(4, bias 7) | mantissa(3)).
torch::Tensor encode_fp8_e4m3(const torch::Tensor& grid_values);
// uint8 codes -> fp32 values.
torch::Tensor decode_fp8_e4m3(const torch::Tensor& codes);

// vLLM's W4A8-FP8 kernel (CutlassW4A8LinearKernel.process_weights_after_loading, through
// convert_bf16_scales_to_fp8) re-encodes the stored group scales [rows, groups] per row: r =
// max(rowmax / 448, 1 / (448 * 512)), g = e4m3(e4m3(clamp(scale * (1 / r), +-448)) / 8), and
// the row's channel scale 8 r; the weight is dequantized with g * 8 r. Returns g * 8 r (fp32,
// [rows, groups]), the scales the engine multiplies the int4 values by.
torch::Tensor w4a8_fp8_engine_scales(const torch::Tensor& group_scales);

}  // namespace qtrain::quant
