// The one implementation of the quantization arithmetic (the role of ggml's
// quantize_row_*_ref): scales and zero points from min/max, quantize, dequantize and
// fake-quantize with a straight-through gradient. Fake-quant during training, calibration,
// PTQ, export and the integer evaluator all call these functions, so what is exported is
// exactly what was simulated. Conventions are compressed-tensors' (docs/formats.md):
//   symmetric:  scale = max(|min(x,0)|, |max(x,0)|) / ((qmax - qmin) / 2), zero_point = 0
//   asymmetric: scale = (max(x,0) - min(x,0)) / (qmax - qmin), zero_point = rne(clamp(qmin - min/scale))
//   q = rne(clamp(x / scale + zero_point, qmin, qmax)); x' = (q - zero_point) * scale
// with round-half-to-even; FP8 E4M3 rounds to its own grid after clamping to +-448.
// Scales are rounded through `scale_dtype` (the dtype the checkpoint stores them in), so
// that the simulated and the stored scales are the same numbers.
#pragma once
#include <torch/torch.h>

#include "quant/quant_args.h"

namespace qtrain::quant {

struct QParams {
  torch::Tensor scale;       // [units, 1], fp32 values representable in scale_dtype
  torch::Tensor zero_point;  // [units, 1], fp32 holding integers (zeros when symmetric)
};

// The 2-D view [units, elements] over which one scale applies: tensor [1, N], channel
// [rows, cols], group [rows * cols / g, g], token [tokens, hidden] (x's last dim is the
// hidden one). Throws qtrain::Error when a group size does not divide the columns.
torch::Tensor unit_view(const torch::Tensor& x, const QuantArgs& args);

// From per-unit min and max ([units, 1]).
QParams qparams_from_minmax(const torch::Tensor& min_vals, const torch::Tensor& max_vals, const QuantArgs& args,
                            torch::ScalarType scale_dtype = torch::kBFloat16);
// From the data itself (min-max over each unit of unit_view(x)).
QParams compute_qparams(const torch::Tensor& x, const QuantArgs& args,
                        torch::ScalarType scale_dtype = torch::kBFloat16);

// On unit views: the grid values (integers, or FP8 grid points in units of scale) as fp32.
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
