// Picking the device and compute dtype from config strings ("auto", "cpu", "cuda"; "auto",
// "fp32", "bf16", "fp16"). Under MPI each rank takes the GPU of its local rank.
#pragma once
#include <torch/torch.h>

#include <string>

namespace qtrain {

// auto = cuda:<local rank> when CUDA is available, else CPU. Throws qtrain::Error when
// "cuda" is asked for without a GPU.
torch::Device resolve_device(const std::string& name);

// auto = bf16 on CUDA, fp32 on CPU.
torch::ScalarType resolve_dtype(const std::string& name, const torch::Device& device);

// Dense bf16 peak of the GPU in TFLOP/s, from its name (H100/H200 SXM 989.4, A100 312, ...);
// 0 where unknown and on the CPU (no MFU is reported then).
double peak_bf16_tflops(const torch::Device& device);

std::string describe(const torch::Device& device, torch::ScalarType dtype);  // "cuda:0 bf16"

}  // namespace qtrain
