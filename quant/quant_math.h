// The one implementation of the quantization arithmetic (the role of ggml's
// quantize_row_*_ref): scales and zero points from min/max, quantize, dequantize and
// fake-quantize with a straight-through gradient. Fake-quant during training, calibration,
// PTQ, export and the integer evaluator all call these functions, so what is exported is
// exactly what was simulated. Conventions are compressed-tensors' (docs/formats.md):
//   symmetric:  scale = max(|min(x,0)|, |max(x,0)|) / ((qmax - qmin) / 2), zero_point = 0
//   asymmetric: scale = (max(x,0) - min(x,0)) / (qmax - qmin), zero_point = rne(clamp(qmin - min/scale))
//   q = rne(clamp(x / scale + zero_point, qmin, qmax)); x' = (q - zero_point) * scale
// with round-half-to-even; FP8 E4M3 rounds to its own grid after clamping to +-448, FP4 E2M1
// to its own (quant/fp4.h) after clamping to +-6. FP4's scales are compressed-tensors' too:
// NVFP4 an E4M3 group scale under an fp32 global scale (the effective scale is
// group_scale / global_scale), MXFP4 a power of two per group (docs/notes/fp4_formats.md).
// Scales are rounded through `scale_dtype` (the dtype the checkpoint stores them in), so
// that the simulated and the stored scales are the same numbers.
#pragma once
#include <torch/torch.h>

#include "quant/quant_args.h"

namespace qtrain::quant {

struct QParams {
  torch::Tensor scale;         // [units, 1], fp32 values representable in scale_dtype (NVFP4: E4M3)
  torch::Tensor zero_point;    // [units, 1], fp32 holding integers (zeros when symmetric)
  torch::Tensor global_scale;  // [1] fp32, NVFP4 only (a multiplier: 448 * 6 / absmax); else undefined
  // The scale the grid values are multiplied back by where the engine's differs from the one
  // that quantized them ([units, 1]; w4afp8: fp8.h's w4a8_fp8_engine_scales); else undefined.
  torch::Tensor dequant_scale;
};

// The scale that x is divided by: scale, or scale / global_scale (NVFP4), in fp32.
torch::Tensor effective_scale(const QParams& qp);
// The scale that the grid values are multiplied by: dequant_scale where defined, else effective_scale.
torch::Tensor dequantization_scale(const QParams& qp);

// The 2-D view [units, elements] over which one scale applies: tensor [1, N], channel
// [rows, cols], group [rows * cols / g, g], token [tokens, hidden] (x's last dim is the
// hidden one), tensor_group as group, block [blocks, block_rows * block_cols] (the blocks
// row-major over the matrix, each block's elements row-major; a matrix whose sides are not
// multiples of the block is padded with zeros to whole blocks). Throws qtrain::Error when a
// group size does not divide the columns.
torch::Tensor unit_view(const torch::Tensor& x, const QuantArgs& args);
// The inverse: a unit view back to x's shape `sizes` (padding dropped).
torch::Tensor from_unit_view(const torch::Tensor& view, at::IntArrayRef sizes, const QuantArgs& args);

// From per-unit min and max ([units, 1]). NVFP4 needs the global scale (`global_scale`).
// FP4's scales ignore scale_dtype (their own formats: E4M3 and E8M0).
QParams qparams_from_minmax(const torch::Tensor& min_vals, const torch::Tensor& max_vals, const QuantArgs& args,
                            torch::ScalarType scale_dtype = torch::kBFloat16, const torch::Tensor& global_scale = {});
// From the data itself (min-max over each unit of unit_view(x)); NVFP4's global scale from
// the absmax of all of x unless given.
QParams compute_qparams(const torch::Tensor& x, const QuantArgs& args,
                        torch::ScalarType scale_dtype = torch::kBFloat16, const torch::Tensor& global_scale = {});
// Adds the engine's dequantization scales where args.fp8_group_scales (w4afp8) to the
// parameters of a weight of `rows` rows; qp unchanged otherwise.
QParams with_engine_scales(QParams qp, const QuantArgs& args, int64_t rows);
// NVFP4's global scale of x (fp32 [1]): quant/fp4.h's nvfp4_global_scale of its absmax.
torch::Tensor global_scale_of(const torch::Tensor& x);
// A learned scale rounded as it is stored: through scale_dtype, E4M3 for NVFP4 (no gradient
// flows through this; callers add the straight-through term).
torch::Tensor round_scale(const torch::Tensor& scale, const QuantArgs& args, torch::ScalarType scale_dtype);

// On unit views: the grid values (integers, or FP8/FP4 grid points in units of scale) as fp32.
torch::Tensor quantize(const torch::Tensor& view, const QParams& qp, const QuantArgs& args);
torch::Tensor dequantize(const torch::Tensor& q, const QParams& qp);

// x -> dequantize(quantize(x)) in x's shape and dtype. Gradient: straight through where
// x / scale + zero_point lies inside [qmin, qmax], zero outside (clipped values do not
// learn); when qp.scale requires grad, the LSQ gradient for the scale (Esser et al. 2020,
// scaled by 1 / sqrt(elements per unit * qmax)).
// On CUDA (fp32/fp16/bf16, scales not learned) this runs the fused kernel of
// quant/cuda/fake_quant_kernel.cu, which gives the same bits as the unfused LibTorch form;
// QTRAIN_FAKE_QUANT_KERNEL=torch in the environment forces the unfused form (benchmarks).
torch::Tensor fake_quantize(const torch::Tensor& x, const QParams& qp, const QuantArgs& args);
// fake_quantize for the weight operand of a matmul: under CUDA autocast an fp32 x comes out
// in the autocast dtype (bf16), the cast the matmul would make, fused into the kernel.
torch::Tensor fake_quantize_for_matmul(const torch::Tensor& x, const QParams& qp, const QuantArgs& args);
// The LibTorch reference of fake_quantize, on every device; the fused kernel is tested against it.
torch::Tensor fake_quantize_unfused(const torch::Tensor& x, const QParams& qp, const QuantArgs& args);
// False when QTRAIN_FAKE_QUANT_KERNEL=torch (read once per process).
bool fused_fake_quant_allowed();

// Round-to-nearest-even onto the FP8 E4M3 grid (values within +-448), in fp32; the same
// on every LibTorch version (1.13 has no float8 dtype).
torch::Tensor round_to_fp8_e4m3(const torch::Tensor& x);

constexpr double kFp8E4M3Max = 448.0;

}  // namespace qtrain::quant
