// GPU properties (CUDA builds only).
#include <ATen/cuda/CUDAContext.h>

#include <string>

namespace qtrain {

std::string cuda_device_name(int device) { return at::cuda::getDeviceProperties(device)->name; }

}  // namespace qtrain
