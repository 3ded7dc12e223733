// Launchers of the fused quantize-dequantize CUDA kernels (fake_quant_kernel.cu). Plain
// pointers and no LibTorch types, so the .cu file compiles with nvcc alone; the autograd
// wrapper around them is fused_fake_quant.cpp.
#pragma once
#include <cstdint>

namespace qtrain::quant::cuda {

enum class ElementType { float32, float16, bfloat16 };
// The values a unit's quantized elements take (quant_math.cpp numbers them alike): the
// integers, the FP8 E4M3 grid, the FP4 E2M1 grid.
enum class ValueGrid : int { integer = 0, fp8_e4m3 = 1, fp4_e2m1 = 2 };

// One scale and zero point per unit of `unit_len` consecutive elements (unit i covers
// elements [i * unit_len, (i + 1) * unit_len)), the layout of quant_math.h's unit_view.
struct FakeQuantLaunch {
  ElementType type;      // x's (and the gradient's for x)
  ElementType out_type;  // x's: type, or bf16/fp16 when type is fp32
  int64_t numel;
  int64_t unit_len;
  const float* scale;       // [numel / unit_len]
  const float* zero_point;  // [numel / unit_len]
  const float* dequant_scale;  // [numel / unit_len], or null: the grid values times scale
  float qmin;
  float qmax;
  ValueGrid grid;  // what the clamped value is rounded onto
  int max_blocks;  // grid-stride loops: a few waves of the device's multiprocessors
  void* stream;    // cudaStream_t
};

// out = (round(clamp(x / scale + zero_point, qmin, qmax)) - zero_point) * scale, in fp32
// (round: half to even, onto the grid's values); dequant_scale, where given, replaces the
// last scale (quant_math.h's QParams::dequant_scale)
// registers, stored as out_type.
void fake_quant_forward(const FakeQuantLaunch& launch, const void* x, void* out);
// grad_x = grad_out where qmin <= x / scale + zero_point <= qmax, else 0 (STE with clipping);
// grad_out is out_type, grad_x x's type.
void fake_quant_backward(const FakeQuantLaunch& launch, const void* x, const void* grad_out, void* grad_x);

}  // namespace qtrain::quant::cuda
