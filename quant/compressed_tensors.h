// Tensor names and config fields of the compressed-tensors checkpoint layout that vLLM
// loads (docs/formats.md, from compressed-tensors 0.13 and vLLM's loader), in one place.
#pragma once

namespace qtrain::quant::ct {

inline constexpr const char* kQuantMethod = "compressed-tensors";
inline constexpr const char* kVersion = "0.13.0";  // the layout version mirrored
inline constexpr const char* kPackQuantized = "pack-quantized";    // int weight-only
inline constexpr const char* kIntQuantized = "int-quantized";      // int8 weights + int8 activations
inline constexpr const char* kFloatQuantized = "float-quantized";  // FP8
inline constexpr const char* kMixedPrecision = "mixed-precision";  // groups of different formats
inline constexpr const char* kNvfp4PackQuantized = "nvfp4-pack-quantized";  // NVFP4, NVFP4A16
inline constexpr const char* kMxfp4PackQuantized = "mxfp4-pack-quantized";  // MXFP4, MXFP4A16

// Per linear "X": X.<suffix>.
inline constexpr const char* kWeightPacked = "weight_packed";
inline constexpr const char* kWeightShape = "weight_shape";
inline constexpr const char* kWeightScale = "weight_scale";
inline constexpr const char* kWeightZeroPoint = "weight_zero_point";
inline constexpr const char* kInputScale = "input_scale";
inline constexpr const char* kInputZeroPoint = "input_zero_point";
inline constexpr const char* kWeight = "weight";
inline constexpr const char* kWeightGlobalScale = "weight_global_scale";  // NVFP4: fp32 [1]
inline constexpr const char* kInputGlobalScale = "input_global_scale";    // NVFP4 W4A4: fp32 [1]
// Per attention: model.layers.N.self_attn.<k_scale|v_scale>.
inline constexpr const char* kKeyScale = "k_scale";
inline constexpr const char* kValueScale = "v_scale";

}  // namespace qtrain::quant::ct
