// Peak memory of this process: the CUDA caching allocator's peak allocation on a GPU, the
// resident-set high-water mark (VmHWM) on the host.
#pragma once
#include <torch/torch.h>

#include <cstdint>

namespace qtrain {

int64_t peak_memory_bytes(const torch::Device& device);
// What the process holds now before any tensor of its own: the resident set (VmRSS: the
// libraries, MPI) on the host, 0 on a GPU (the allocator counts only tensors). A job's
// memory estimate (trainer/estimate.h) is compared with the peak above it.
int64_t baseline_memory_bytes(const torch::Device& device);
void reset_peak_memory(const torch::Device& device);
// The host's physical memory plus swap (/proc/meminfo): what a process could ever hold. A
// model larger than this can only fail, so loaders refuse it before allocating.
int64_t host_memory_capacity_bytes();

}  // namespace qtrain
