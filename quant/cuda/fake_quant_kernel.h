// Launchers of the fused quantize-dequantize CUDA kernels (fake_quant_kernel.cu). Plain
// pointers and no LibTorch types, so the .cu file compiles with nvcc alone; the autograd
// wrapper around them is fused_fake_quant.cpp.
#pragma once
#include <cstdint>

namespace qtrain::quant::cuda {

enum class ElementType { float32, float16, bfloat16 };

// One scale and zero point per unit of `unit_len` consecutive elements (unit i covers
// elements [i * unit_len, (i + 1) * unit_len)), the layout of quant_math.h's unit_view.
struct FakeQuantLaunch {
  ElementType type;      // x's (and the gradient's for x)
  ElementType out_type;  // x's: type, or bf16/fp16 when type is fp32
  int64_t numel;
  int64_t unit_len;
  const float* scale;       // [numel / unit_len]
  const float* zero_point;  // [numel / unit_len]
  float qmin;
  float qmax;
  bool fp8;        // round onto the FP8 E4M3 grid instead of the integers
  int max_blocks;  // grid-stride loops: a few waves of the device's multiprocessors
  void* stream;    // cudaStream_t
};

// out = (rne(clamp(x / scale + zero_point, qmin, qmax)) - zero_point) * scale, in fp32
// registers, stored as out_type.
void fake_quant_forward(const FakeQuantLaunch& launch, const void* x, void* out);
// grad_x = grad_out where qmin <= x / scale + zero_point <= qmax, else 0 (STE with clipping);
// grad_out is out_type, grad_x x's type.
void fake_quant_backward(const FakeQuantLaunch& launch, const void* x, const void* grad_out, void* grad_x);

}  // namespace qtrain::quant::cuda
