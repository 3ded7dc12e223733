// Launchers of the decoder's fused element-wise CUDA kernels (rms_norm_kernel.cu,
// swiglu_kernel.cu, rotary_kernel.cu). Plain pointers and no LibTorch types, so the .cu files
// compile with nvcc alone; the autograd functions around them are fused_layers.cpp.
#pragma once
#include <cstdint>

namespace qtrain::model::cuda {

enum class DType { float32, float16, bfloat16 };

// RMSNorm over rows of `hidden` elements: out = w * round_x(x * rstd), rstd = rsqrt(mean(x^2) + eps),
// as model/layers.cpp's RMSNormImpl::forward computes it (round_x: to x's dtype).
struct RmsNormLaunch {
  DType x_type, w_type, out_type;
  int64_t rows, hidden;
  float eps;
  void* stream;
};
void rms_norm_forward(const RmsNormLaunch& l, const void* x, const void* w, void* out, float* rstd);
// grad_x [rows, hidden] in x_type; grad_w_partial [tiles, hidden] fp32 with tiles =
// rms_norm_weight_tiles(rows), summed over its first dimension by the caller.
void rms_norm_backward(const RmsNormLaunch& l, const void* grad_out, const void* x, const void* w, const float* rstd,
                       void* grad_x, float* grad_w_partial);
int64_t rms_norm_weight_tiles(int64_t rows);

// SwiGLU: out = round(silu(gate)) * up, element-wise over n elements of one dtype.
void swiglu_forward(DType type, int64_t n, const void* gate, const void* up, void* out, void* stream);
void swiglu_backward(DType type, int64_t n, const void* grad_out, const void* gate, const void* up, void* grad_gate,
                     void* grad_up, void* stream);

// Rotary embedding of x [batch, heads, seq, head_dim] (any strides, head_dim contiguous):
// out = x * cos + rotate_half(x) * sin with cos/sin [seq, head_dim] contiguous; out and the
// gradient are contiguous [batch, heads, seq, head_dim].
struct RotaryLaunch {
  DType x_type, cs_type, out_type;
  int64_t batch, heads, seq, head_dim;
  int64_t stride_batch, stride_head, stride_seq;  // of x, in elements
  void* stream;
};
void rotary_forward(const RotaryLaunch& l, const void* x, const void* cos, const void* sin, void* out);
// grad_out contiguous in out_type; grad_x contiguous in x_type.
void rotary_backward(const RotaryLaunch& l, const void* grad_out, const void* cos, const void* sin, void* grad_x);

}  // namespace qtrain::model::cuda
