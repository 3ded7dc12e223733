// Launcher of the fused min-max quantization-parameter kernel (qparams_kernel.cu): per unit
// of a [units, unit_len] view, min and max, then scale and zero point exactly as
// quant_math.cpp's qparams_from_minmax computes them on CUDA. Plain pointers, no LibTorch.
#pragma once
#include <cstdint>

#include "quant/cuda/fake_quant_kernel.h"

namespace qtrain::quant::cuda {

// How a scale is rounded before it is used: through the dtype the checkpoint stores it in.
enum class ScaleStorage { float32, float16, bfloat16 };

struct QParamsLaunch {
  ElementType type;  // of x
  int64_t units;
  int64_t unit_len;
  float qmin, qmax;     // the grid (FP8: -448, 448)
  bool symmetric;
  ScaleStorage storage;
  float epsilon;        // the storage dtype's epsilon, the scale of an all-zero unit
  void* stream;         // cudaStream_t
};

// scale[u], zero_point[u] (fp32, [units]) from x's unit u (row-major [units, unit_len]).
void minmax_qparams(const QParamsLaunch& launch, const void* x, float* scale, float* zero_point);

}  // namespace qtrain::quant::cuda
