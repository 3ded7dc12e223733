// FP8 E4M3 (OCP "fn" variant: no infinities, max 448) bit encoding of values already on its
// grid (quant_math.h round_to_fp8_e4m3), as raw bytes: LibTorch 1.13 has no float8 type.
#pragma once
#include <torch/torch.h>

namespace qtrain::quant {

// fp32 values on the E4M3 grid -> uint8 codes (sign | exponent(4, bias 7) | mantissa(3)).
torch::Tensor encode_fp8_e4m3(const torch::Tensor& grid_values);
// uint8 codes -> fp32 values.
torch::Tensor decode_fp8_e4m3(const torch::Tensor& codes);

}  // namespace qtrain::quant
