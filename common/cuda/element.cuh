// Loads and stores of the three floating types in fp32 registers, 16-byte packs and the launch
// check, shared by every qtrain kernel (quant/cuda, model/cuda, distill/cuda). nvcc only.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>


namespace qtrain::cuda {

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// Rounds an fp32 value to T's precision and back (the reference's cast to a narrower dtype).
template <typename T>
__device__ __forceinline__ float round_to(float v) { return to_float(from_float<T>(v)); }

template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
  T v[VEC];
};

inline bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

inline void check_launch(const char* what) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) throw std::runtime_error(std::string(what) + " failed to launch: " + cudaGetErrorString(status));
}

// Calls f(T{}) with T the C++ type of `type`, an enum with members float32, float16, bfloat16.
template <typename Enum, typename F>
void dispatch(Enum type, F&& f) {
  switch (type) {
    case Enum::float32: return f(float{});
    case Enum::float16: return f(__half{});
    case Enum::bfloat16: return f(__nv_bfloat16{});
  }
}

}  // namespace qtrain::cuda
