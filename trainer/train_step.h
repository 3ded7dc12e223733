// One optimizer step of data-parallel distillation, the algorithm in order:
//   for each of this rank's micro-batches: forward teacher and student, loss / k, backward
//     (the last backward all-reduces gradient buckets as they become ready);
//   wait for the all-reduce -> zero the gradients of pruned weights -> global gradient norm
//   -> skip on NaN/Inf, else clip and update.
// ZeRO-1 (parallel.zero_stage 1): reduce-scatter instead of all-reduce, the norm summed over
// the ranks' segments, each rank updates its segments, then the parameters are all-gathered.
// ZeRO-2: gradients reduce-scattered in every micro-batch into owned storage (grad_sync.h).
// ZeRO-3: the root units of the sharded student and teacher stay gathered for the
// micro-batches; their decoder layers are gathered one at a time (sharded_model.h).
#pragma once
#include <torch/torch.h>

#include <functional>

#include "data/train_loader.h"
#include "distill/distill_loss.h"
#include "trainer/adamw.h"
#include "trainer/flat_parameters.h"
#include "trainer/grad_sync.h"

namespace qtrain::trainer {

class StudentPruning;
class ShardedModel;

struct StepContext {
  distill::DistillLoss& loss;
  FlatParameters& flat;
  GradSync& grad_sync;
  AdamW& optimizer;
  torch::Device device;
  double grad_clip = 1.0;        // 0 = off
  bool inject_nan = false;       // fault injection for tests (QTRAIN_INJECT_NAN_STEPS)
  StudentPruning* pruning = nullptr;  // masks whose pruned weights get no update; null = none
  ShardedModel* sharded_student = nullptr;  // ZeRO-3; null = not sharded
  ShardedModel* sharded_teacher = nullptr;
};

struct StepResult {
  double total = 0, ce = 0, kd = 0, hidden = 0;  // averaged over all ranks' micro-batches
  double router = 0;  // the load-balancing loss, unweighted (0 unless distill.router_aux_loss > 0)
  double grad_norm = 0;                          // before clipping
  bool skipped = false;                          // non-finite loss or gradient: no update
  int buckets_overlapped = 0;                    // all-reduces launched during backward
  int64_t tokens = 0;                            // tokens this step over all ranks
};

StepResult train_step(StepContext& ctx, const data::StepBatch& batch, double lr);

}  // namespace qtrain::trainer
