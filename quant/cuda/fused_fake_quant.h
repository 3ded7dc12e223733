// The fused CUDA fake quantization as a LibTorch autograd function (CUDA builds only).
#pragma once
#include <torch/torch.h>

#include <optional>
#include <utility>

namespace qtrain::quant::cuda {

// Whether the fused kernel takes x: a CUDA tensor of fp32, fp16 or bf16 with one scale per
// unit of `unit_len` elements, and a scale that is not learned (LSQ needs the scale gradient,
// which the unfused form computes).
bool fused_fake_quantize_applies(const torch::Tensor& x, const torch::Tensor& scale, int64_t unit_len);

// x' in x's shape, on the value grid `grid` (fake_quant_kernel.h's ValueGrid), stored as out_dtype (default x's dtype; bf16/fp16 from an fp32 x);
// backward: the clipped straight-through gradient, in x's dtype.
torch::Tensor fused_fake_quantize(const torch::Tensor& x, const torch::Tensor& scale, const torch::Tensor& zero_point,
                                  const torch::Tensor& dequant_scale, int64_t unit_len, double qmin, double qmax, int grid,
                                  std::optional<torch::ScalarType> out_dtype = std::nullopt);

// Min-max scale and zero point ([units, 1] fp32 each) of every row of the 2-D view x, as
// quant_math.cpp's qparams_from_minmax(aminmax(x)) computes them on CUDA, in one kernel.
// Applies to CUDA fp32/fp16/bf16 views with at least `kFusedQParamsMinUnits` rows (fewer
// rows would give each warp too much of the tensor).
constexpr int64_t kFusedQParamsMinUnits = 256;
bool fused_minmax_qparams_applies(const torch::Tensor& view);
std::pair<torch::Tensor, torch::Tensor> fused_minmax_qparams(const torch::Tensor& view, double qmin, double qmax,
                                                             bool symmetric, torch::ScalarType scale_dtype);

}  // namespace qtrain::quant::cuda
