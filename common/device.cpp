// Device and dtype resolution.
#include "common/device.h"

#include "common/compat.h"
#include "common/dist.h"
#include "common/error.h"

namespace qtrain {

torch::Device resolve_device(const std::string& name) {
  const bool has_cuda = compat::cuda_available();
  if (name == "cpu" || (name == "auto" && !has_cuda)) return torch::kCPU;
  if (name != "cuda" && name != "auto") throw Error("unknown device '" + name + "'").expected("auto|cpu|cuda");
  if (!has_cuda) throw Error("device 'cuda' requested, but this build or machine has no CUDA GPU").expected("auto|cpu");
  const int gpus = static_cast<int>(torch::cuda::device_count());
  const int local = dist::local_rank();
  if (local >= gpus)
    throw Error("local rank " + std::to_string(local) + " has no GPU of its own (" + std::to_string(gpus) +
                " visible); start at most one rank per GPU");
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local));
}

torch::ScalarType resolve_dtype(const std::string& name, const torch::Device& device) {
  if (name == "auto") return device.is_cuda() ? torch::kBFloat16 : torch::kFloat32;
  if (name == "fp32" || name == "float32") return torch::kFloat32;
  if (name == "bf16" || name == "bfloat16") return torch::kBFloat16;
  if (name == "fp16" || name == "float16") return torch::kFloat16;
  throw Error("unknown dtype '" + name + "'").expected("auto|fp32|bf16|fp16");
}

#if QTRAIN_WITH_CUDA
std::string cuda_device_name(int device);  // common/cuda/device_cuda.cpp
#endif

double peak_bf16_tflops(const torch::Device& device) {
#if QTRAIN_WITH_CUDA
  if (!device.is_cuda()) return 0.0;
  const auto name = cuda_device_name(device.index());
  if (name.find("H100") != std::string::npos && name.find("PCIe") != std::string::npos) return 756.0;
  for (const auto& [key, tflops] : std::vector<std::pair<std::string, double>>{
           {"H200", 989.4}, {"H100", 989.4}, {"H800", 989.4}, {"A100", 312.0}, {"A800", 312.0}, {"L40S", 362.0}})
    if (name.find(key) != std::string::npos) return tflops;
#endif
  (void)device;
  return 0.0;
}

std::string describe(const torch::Device& device, torch::ScalarType dtype) {
  const char* d = dtype == torch::kBFloat16 ? "bf16" : dtype == torch::kFloat16 ? "fp16" : dtype == torch::kFloat32 ? "fp32" : "other";
  return device.str() + " " + d;
}

}  // namespace qtrain
