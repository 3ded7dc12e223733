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

std::string describe(const torch::Device& device, torch::ScalarType dtype) {
  const char* d = dtype == torch::kBFloat16 ? "bf16" : dtype == torch::kFloat16 ? "fp16" : dtype == torch::kFloat32 ? "fp32" : "other";
  return device.str() + " " + d;
}

}  // namespace qtrain
