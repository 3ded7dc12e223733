// The decoder's fused CUDA kernels (rms_norm_kernel.cu, swiglu_kernel.cu, rotary_kernel.cu)
// as LibTorch autograd functions (CUDA builds only). model/layers.cpp and model/rope.cpp call
// them where they apply and keep their LibTorch forms as the reference, which
// QTRAIN_MODEL_KERNELS=torch selects everywhere (benchmarks, tests).
#pragma once
#include <torch/torch.h>

namespace qtrain::model::cuda {

// False when QTRAIN_MODEL_KERNELS=torch (read once per process).
bool fused_layers_allowed();

// RMSNormImpl::forward: weight * (x * rsqrt(mean(x^2) + eps)).to(x's dtype), in fp32.
bool fused_rms_norm_applies(const torch::Tensor& x, const torch::Tensor& weight);
torch::Tensor fused_rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps);

// MLPImpl's silu(gate) * up.
bool fused_swiglu_applies(const torch::Tensor& gate, const torch::Tensor& up);
torch::Tensor fused_swiglu(const torch::Tensor& gate, const torch::Tensor& up);

// apply_rotary: x [batch, heads, seq, head_dim] (any strides, head_dim contiguous),
// cos/sin [seq, head_dim]; the result is contiguous.
bool fused_rotary_applies(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);
torch::Tensor fused_rotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);

}  // namespace qtrain::model::cuda
