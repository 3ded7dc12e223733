// /proc/self/status on the host; CUDA statistics in common/cuda/memory_cuda.cpp.
#include "common/memory.h"

#include <cstdint>
#include <fstream>
#include <string>

namespace qtrain {

#if QTRAIN_WITH_CUDA
int64_t cuda_peak_memory_bytes(int device);
void cuda_reset_peak_memory(int device);
#endif

namespace {
// "VmHWM:" -> its value in bytes, from /proc/self/status (or another file of "Key: N kB").
int64_t status_bytes(const std::string& field, const char* file = "/proc/self/status") {
  std::ifstream status(file);
  std::string line;
  while (std::getline(status, line))
    if (line.rfind(field, 0) == 0) return std::stoll(line.substr(field.size())) * 1024;
  return 0;
}
}  // namespace

int64_t peak_memory_bytes(const torch::Device& device) {
#if QTRAIN_WITH_CUDA
  if (device.is_cuda()) return cuda_peak_memory_bytes(device.index());
#endif
  (void)device;
  return status_bytes("VmHWM:");
}

int64_t host_memory_capacity_bytes() {
  const int64_t total = status_bytes("MemTotal:", "/proc/meminfo") + status_bytes("SwapTotal:", "/proc/meminfo");
  return total > 0 ? total : INT64_MAX;  // no /proc/meminfo: nothing to compare with
}

int64_t baseline_memory_bytes(const torch::Device& device) { return device.is_cuda() ? 0 : status_bytes("VmRSS:"); }

void reset_peak_memory(const torch::Device& device) {
#if QTRAIN_WITH_CUDA
  if (device.is_cuda()) cuda_reset_peak_memory(device.index());
#endif
  (void)device;
}

}  // namespace qtrain
