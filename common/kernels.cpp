// The one place that reads the QTRAIN_*_KERNEL(S) switches.
#include "common/kernels.h"

#include <cstdlib>
#include <cstring>

#include "common/error.h"

namespace qtrain {

const std::vector<KernelSwitch>& kernel_switches() {
  static const std::vector<KernelSwitch> switches = {
      {KernelFamily::model_layers, "QTRAIN_MODEL_KERNELS", "model_layers"},
      {KernelFamily::fake_quant, "QTRAIN_FAKE_QUANT_KERNEL", "fake_quant"},
      {KernelFamily::loss, "QTRAIN_LOSS_KERNEL", "loss"},
  };
  return switches;
}

namespace {

// true: fused (unset or "fused"); false: "torch"; anything else is refused.
bool read_switch(const KernelSwitch& s) {
  const char* value = std::getenv(s.variable);
  if (value == nullptr || std::strcmp(value, "fused") == 0 || value[0] == '\0') return true;
  if (std::strcmp(value, "torch") == 0) return false;
  throw Error(std::string("environment variable ") + s.variable + "=" + value + " is not a kernel choice")
      .key(s.variable)
      .expected("fused or torch (or unset: fused)");
}

}  // namespace

bool fused_kernels_allowed(KernelFamily family) {
  // Read once per family (kernel_switches() lists them in enum order): the value may not
  // change in the middle of a run.
  static const auto allowed = [] {
    std::vector<bool> out;
    for (const auto& s : kernel_switches()) out.push_back(read_switch(s));
    return out;
  }();
  return allowed.at(static_cast<size_t>(family));
}

nlohmann::json check_kernel_switches(bool cuda) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& s : kernel_switches()) {
    const bool fused = read_switch(s);
#if QTRAIN_WITH_CUDA
    out[s.name] = fused && cuda ? "fused" : "torch";
#else
    (void)fused;
    (void)cuda;
    out[s.name] = "torch";  // no CUDA: no fused kernel to run
#endif
  }
  return out;
}

std::string describe_kernel_switches(const nlohmann::json& choices) {
  std::string line = "kernels:", set;
  for (const auto& s : kernel_switches()) {
    line += std::string(line.back() == ':' ? " " : ", ") + s.name + " " + choices.value(s.name, std::string("?"));
    if (const char* value = std::getenv(s.variable); value != nullptr && value[0] != '\0')
      set += std::string(set.empty() ? "" : ", ") + s.variable + "=" + value;
  }
#if !QTRAIN_WITH_CUDA
  line += " (built without CUDA)";
#endif
  if (!set.empty()) line += " (" + set + ")";
  return line;
}

}  // namespace qtrain
