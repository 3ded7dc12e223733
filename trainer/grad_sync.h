// Data-parallel gradient averaging that overlaps backward (the scheme of PyTorch DDP's
// Reducer): a hook after each parameter's gradient accumulation marks it ready during the
// last micro-batch of a step; a bucket whose parameters are all ready is all-reduced at
// once, while backward goes on with earlier layers. Buckets are launched strictly in index
// order, so every rank issues the same collectives in the same order.
// ZeRO-1 (the flat buffers sharded over the ranks): each bucket is reduce-scattered instead,
// so a rank ends with the summed gradient of its own segment of every bucket, and after the
// optimizer has updated those segments, all_gather_parameters() sends them to every rank.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <vector>

#include "trainer/collective.h"
#include "trainer/flat_parameters.h"

namespace qtrain::trainer {

class GradSync {
 public:
  GradSync(FlatParameters& flat, Collective& collective);
  ~GradSync();
  GradSync(const GradSync&) = delete;
  GradSync& operator=(const GradSync&) = delete;

  // Call before each micro-batch's backward; buckets go out only during the last one
  // (gradient accumulation needs no communication before it).
  void begin_micro_batch(bool last);
  // After the last backward: launches what is left (parameters that got no gradient),
  // waits for every bucket and divides by the number of ranks (sharded: the owned segments;
  // the rest of the gradient buffer then holds unspecified values).
  void finish();
  // Sharded: all-gathers every bucket of the parameter buffer, so that each rank's updated
  // segments reach all ranks. Not sharded: nothing to do.
  void all_gather_parameters();
  // Buckets launched during backward on the last step (for the overlap metric).
  int launched_during_backward() const { return launched_in_backward_; }

 private:
  void mark_ready(size_t entry);
  void launch_ready_prefix();
  FlatParameters& flat_;
  Collective& collective_;
  bool sharded_ = false;
  std::vector<FlatRange> owned_;
  std::vector<int> bucket_of_;       // entry -> bucket
  std::vector<int> missing_;         // per bucket: entries not yet ready
  std::vector<bool> entry_ready_;
  size_t next_bucket_ = 0;
  bool last_ = false;
  int launched_in_backward_ = 0;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;  // keep the hooked nodes alive
};

}  // namespace qtrain::trainer
