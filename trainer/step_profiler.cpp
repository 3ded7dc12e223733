// Start and stop of the profiler around the chosen steps.
#include "trainer/step_profiler.h"

#include <cstdio>
#include <filesystem>

#include "common/compat.h"
#include "common/error.h"

namespace qtrain::trainer {

StepProfiler::StepProfiler(int64_t first_step, int64_t steps, const std::string& output_dir, torch::Device device,
                           bool main_rank)
    : device_(device) {
  if (first_step <= 0 || !main_rank) return;
  if (!compat::profiler_available())
    throw Error("this build's LibTorch has no profiler API (it needs LibTorch 2.x)")
        .key("logging.profile_step")
        .expected("0 (off) with this build");
  first_ = first_step;
  last_ = first_step + steps - 1;
  dir_ = (std::filesystem::path(output_dir) / "profile").string();
}

void StepProfiler::before_step(int64_t step) {
  if (first_ == 0 || step != first_) return;
  std::filesystem::create_directories(dir_);
  if (device_.is_cuda()) torch::cuda::synchronize();
  compat::start_profiler(device_.is_cuda());
  active_ = true;
}

void StepProfiler::after_step(int64_t step) {
  if (!active_ || step != last_) return;
  if (device_.is_cuda()) torch::cuda::synchronize();
  const auto path =
      (std::filesystem::path(dir_) / ("trace_steps_" + std::to_string(first_) + "-" + std::to_string(last_) + ".json"))
          .string();
  compat::stop_profiler(path);
  active_ = false;
  std::fprintf(stderr, "qtrain: profile of steps %lld-%lld written to %s\n", (long long)first_, (long long)last_,
               path.c_str());
}

}  // namespace qtrain::trainer
