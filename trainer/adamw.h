// AdamW (Loshchilov & Hutter 2019, decoupled weight decay) over the flat parameter buffer:
// the moments are flat buffers of the same layout, so one step is a handful of large
// element-wise kernels. Weight decay skips norms and biases (FlatEntry::decay). Matches
// torch.optim.AdamW(amsgrad=False, maximize=False) step for step (tests/trainer/test_adamw.cpp).
// ZeRO-1 (Rajbhandari et al. 2020, stage 1; llm.c's zero.cuh): when the flat buffers are
// sharded, a rank updates only the ranges it owns (FlatParameters::owned_ranges) and holds
// moments only for them, 8 bytes per parameter / ranks.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "trainer/checkpoint.h"
#include "trainer/flat_parameters.h"

namespace qtrain::trainer {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.0;
};

class AdamW {
 public:
  // `rank`: which shard of the flat buffers this optimizer updates (0 when not sharded).
  AdamW(FlatParameters& flat, AdamWOptions options, int rank = 0);
  // One update of every owned parameter element from its gradient, at learning rate `lr`.
  void step(double lr);
  int64_t steps() const { return step_; }
  void set_steps(int64_t steps) { step_ = steps; }
  bool sharded() const { return flat_.shards() > 1; }
  // The gradient views of the owned ranges (the whole buffer when not sharded).
  const std::vector<torch::Tensor>& owned_grads() const { return grads_; }

  // The owned parts of the moments, as pieces of the checkpoint tensors "exp_avg.<param>" and
  // "exp_avg_sq.<param>" of every parameter's full shape: what this rank saves and restores
  // (unsharded: every element), whatever the sharding that wrote or reads them.
  TensorSlices state_slices();
  int64_t state_tensor_count() const { return 2 * static_cast<int64_t>(flat_.entries().size()); }
  // Multiplies the owned moments of parameter `name` by `keep` (broadcast to its shape).
  void mask_state(const std::string& name, const torch::Tensor& keep);

 private:
  // The part of one parameter that lies in one owned range.
  struct Piece {
    size_t entry;
    int64_t param_begin, length;  // elements of the flattened parameter
    int64_t state_offset;         // where they sit in the moment buffers
  };
  FlatParameters& flat_;
  AdamWOptions options_;
  int rank_ = 0;
  std::vector<FlatRange> ranges_;
  std::vector<Piece> pieces_;
  torch::Tensor exp_avg_, exp_avg_sq_;  // owned elements only, ranges_ one after another
  static constexpr int64_t kChunk = int64_t{1} << 22;  // elements updated at once (16 MB of fp32)
  torch::Tensor denom_;                                // one chunk's sqrt(v) + eps
  std::vector<torch::Tensor> params_, grads_, exp_avgs_, exp_avg_sqs_;  // per owned range
  std::vector<torch::Tensor> decayed_;  // owned parameter views that take weight decay
  int64_t step_ = 0;
};

}  // namespace qtrain::trainer
