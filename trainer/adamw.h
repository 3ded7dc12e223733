// AdamW (Loshchilov & Hutter 2019, decoupled weight decay) over the flat parameter buffer:
// the moments are flat buffers of the same layout, so one step is a handful of large
// element-wise kernels. Weight decay skips norms and biases (FlatEntry::decay). Matches
// torch.optim.AdamW(amsgrad=False, maximize=False) step for step (tests/trainer/test_adamw.cpp).
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "trainer/flat_parameters.h"

namespace qtrain::trainer {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.0;
};

class AdamW {
 public:
  AdamW(FlatParameters& flat, AdamWOptions options);
  // One update of every parameter from its gradient, at learning rate `lr`.
  void step(double lr);
  int64_t steps() const { return step_; }

  // State for checkpoints: per-parameter views named "exp_avg.<param>" / "exp_avg_sq.<param>".
  std::vector<std::pair<std::string, torch::Tensor>> state_tensors();
  void set_steps(int64_t steps) { step_ = steps; }

 private:
  FlatParameters& flat_;
  AdamWOptions options_;
  torch::Tensor exp_avg_, exp_avg_sq_;
  std::vector<torch::Tensor> decayed_;  // parameter views that take weight decay
  int64_t step_ = 0;
};

}  // namespace qtrain::trainer
