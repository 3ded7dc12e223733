// The parts of compat.h whose headers are too heavy to include everywhere: the profiler.
#include "common/compat.h"

#include <stdexcept>

#if QTRAIN_TORCH_2
#include <torch/csrc/autograd/profiler_kineto.h>
#endif

namespace qtrain::compat {

#if QTRAIN_TORCH_2
bool profiler_available() { return true; }

void start_profiler(bool cuda) {
  using torch::profiler::impl::ActivityType;
  const torch::profiler::impl::ProfilerConfig config(torch::profiler::impl::ProfilerState::KINETO);
  std::set<ActivityType> activities{ActivityType::CPU};
  if (cuda) activities.insert(ActivityType::CUDA);
  torch::autograd::profiler::prepareProfiler(config, activities);
  torch::autograd::profiler::enableProfiler(config, activities);
}

void stop_profiler(const std::string& chrome_trace_path) {
  auto result = torch::autograd::profiler::disableProfiler();
  result->save(chrome_trace_path);
}
#else
bool profiler_available() { return false; }
void start_profiler(bool) { throw std::runtime_error("the profiler needs LibTorch 2.x (this build has 1.x)"); }
void stop_profiler(const std::string&) {}
#endif

}  // namespace qtrain::compat
