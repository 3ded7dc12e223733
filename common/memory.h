// Peak memory of this process: the CUDA caching allocator's peak allocation on a GPU, the
// resident-set high-water mark (VmHWM) on the host.
#pragma once
#include <torch/torch.h>

#include <cstdint>

namespace qtrain {

int64_t peak_memory_bytes(const torch::Device& device);
void reset_peak_memory(const torch::Device& device);

}  // namespace qtrain
