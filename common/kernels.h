// The kernel switches: each family of hand-written CUDA kernels can be replaced by its
// LibTorch composition (for benchmarks, or to bisect a numeric difference) by setting its
// environment variable to "torch"; unset or "fused" keeps the kernel. Read once, here, and
// nowhere else; `qtrain` and `qeval` log the choice at start (check_kernel_switches) and
// `qtrain` records it in results.json ("kernels"). Without CUDA, or for a model on the CPU,
// no fused kernel runs and every family reports "torch". docs/build.md lists them.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace qtrain {

enum class KernelFamily {
  model_layers,  // RMSNorm, SwiGLU, rotary embedding (model/cuda/fused_layers.h)
  fake_quant,    // fake quantization with its STE backward (quant/cuda)
  loss,          // the chunked KD + CE loss over the vocabulary (distill/cuda)
};

struct KernelSwitch {
  KernelFamily family;
  const char* variable;  // QTRAIN_MODEL_KERNELS, QTRAIN_FAKE_QUANT_KERNEL, QTRAIN_LOSS_KERNEL
  const char* name;      // "model_layers", "fake_quant", "loss": the key in results.json
};
const std::vector<KernelSwitch>& kernel_switches();

// Whether the family's fused kernel may run (its variable is not "torch"). A value other
// than "fused" or "torch" is an error naming the variable (check_kernel_switches reports
// it at start).
bool fused_kernels_allowed(KernelFamily family);

// Validates every variable (qtrain::Error naming it, exit 2) and returns the choices,
// {"model_layers": "fused" | "torch", ...}, as they apply in this build to a model on a GPU
// (`cuda`) or on the CPU (every family "torch": the kernels are CUDA's).
nlohmann::json check_kernel_switches(bool cuda);
// One line for the start-up log: "kernels: model_layers fused, fake_quant fused, loss torch (QTRAIN_LOSS_KERNEL)".
std::string describe_kernel_switches(const nlohmann::json& choices);

}  // namespace qtrain
