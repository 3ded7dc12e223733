// Profiles a window of optimizer steps (logging.profile_step, profile_steps) with the PyTorch
// profiler and writes rank 0's Chrome trace to run.output_dir/profile/trace_steps_A-B.json;
// bench/profile_summary.py turns it into where the GPU time goes (docs/performance.md).
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>

namespace qtrain::trainer {

class StepProfiler {
 public:
  // first_step 0: off. Throws qtrain::Error (key logging.profile_step) where LibTorch has no profiler.
  StepProfiler(int64_t first_step, int64_t steps, const std::string& output_dir, torch::Device device, bool main_rank);
  // Around optimizer step `step` (1-based): the device is synchronised at both ends of the
  // window, so that the trace holds exactly its steps' work.
  void before_step(int64_t step);
  void after_step(int64_t step);

 private:
  int64_t first_ = 0, last_ = 0;
  std::string dir_;
  torch::Device device_;
  bool active_ = false;
};

}  // namespace qtrain::trainer
