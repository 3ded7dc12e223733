// Data-parallel gradient averaging that overlaps backward (the scheme of PyTorch DDP's
// Reducer): a hook after each parameter's gradient accumulation marks it ready; a bucket
// whose parameters are all ready is sent at once, while backward goes on with earlier
// layers. Buckets are launched strictly in index order, so every rank issues the same
// collectives in the same order.
//   stage 0:    during the last micro-batch of a step, each bucket of the flat gradient
//               buffer is all-reduced in place (accumulation needs no communication before);
//   stage 1:    the same buckets are reduce-scattered instead: a rank ends with the summed
//               gradient of its own segments; after the update, all_gather_parameters()
//               sends the updated segments to every rank;
//   stage 2, 3: no rank keeps a full gradient buffer. In every micro-batch, a ready
//               bucket's .grad tensors are packed into a staging bucket (fp32), freed, and
//               reduce-scattered; the rank's segment is added to its owned gradient
//               storage. At most two staging buckets are in flight (DeepSpeed ZeRO-2's
//               reduce bucket). Stage 2 all-gathers the updated parameters as stage 1
//               does; stage 3 gathers them where they are used (sharded_model.h).
#pragma once
#include <torch/torch.h>

#include <memory>
#include <utility>
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

  // Call before each micro-batch's backward (`last`: the step's last one). Replicated
  // gradients go out only during the last one; owned ones in every one.
  void begin_micro_batch(bool last);
  // After the last backward: launches what is left (parameters that got no gradient),
  // waits for every bucket and divides by the number of ranks (sharded: the owned segments;
  // stage 1 leaves unspecified values in the rest of the gradient buffer).
  void finish();
  // Stages 1 and 2: all-gathers every bucket of the parameter buffer, so that each rank's
  // updated segments reach all ranks. Stages 0 and 3: nothing to do.
  void all_gather_parameters();
  // Buckets launched during backward on the last step (for the overlap metric).
  int launched_during_backward() const { return launched_in_backward_; }

 private:
  void mark_ready(size_t entry);
  void launch_ready_prefix();
  void launch(size_t bucket);
  void flush_micro_batch();  // owned: launch the rest of this micro-batch's buckets, fold all
  void fold();               // owned: wait, add the staged segments to the owned gradients
  FlatParameters& flat_;
  Collective& collective_;
  bool sharded_ = false;     // segments per rank (stages 1-3)
  bool owned_grads_ = false; // stages 2, 3
  std::vector<FlatRange> owned_;
  std::vector<int> bucket_of_;       // entry -> bucket
  std::vector<int> missing_;         // per bucket: entries not yet ready
  std::vector<bool> entry_ready_;
  size_t next_bucket_ = 0;
  bool active_ = false;      // a micro-batch whose buckets go out is under way
  int launched_in_backward_ = 0;
  std::vector<std::pair<size_t, torch::Tensor>> staged_;  // owned: bucket, staging buffer in flight
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;  // keep the hooked nodes alive
};

}  // namespace qtrain::trainer
