// CUDA caching-allocator statistics (CUDA builds only).
#include <c10/cuda/CUDACachingAllocator.h>

#include <cstdint>

namespace qtrain {

int64_t cuda_peak_memory_bytes(int device) {
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device);
  return stats.allocated_bytes[0].peak;  // index 0: StatType::AGGREGATE (all pools)
}

void cuda_reset_peak_memory(int device) { c10::cuda::CUDACachingAllocator::resetPeakStats(device); }

}  // namespace qtrain
