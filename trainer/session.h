// What a training run trains with, built once from the config (the first part of
// run_training, trainer/run.h): the teacher and the student with its fake quantization and
// pruning masks, the objective with its hidden-state projections, the flat parameters and
// their ZeRO sharding, the communication, the optimizer and the learning-rate schedule.
#pragma once
#include <memory>
#include <vector>

#include "config/job_config.h"
#include "distill/distill_loss.h"
#include "model/causal_lm.h"
#include "model/safetensors.h"
#include "trainer/adamw.h"
#include "trainer/checkpoint.h"
#include "trainer/collective.h"
#include "trainer/flat_parameters.h"
#include "trainer/grad_sync.h"
#include "trainer/lr_schedule.h"
#include "trainer/pruning.h"
#include "trainer/sharded_model.h"

namespace qtrain::trainer {

// ZeRO-3: the sharded student (and teacher), and the scopes that gather them for work
// outside the training step. At stages 0-2 both are null and every scope list is empty.
struct Shards {
  std::unique_ptr<FlatParameters> teacher_flat;
  std::unique_ptr<ShardedModel> student, teacher;

  using Scopes = std::vector<ShardedModel::Scope>;
  // For evaluations: the root units; decoder layers are gathered one by one as they run.
  Scopes roots();
  // Both models whole, for the pruning importance passes (PTQ and the exports hold one layer
  // at a time; nothing written back: pruning masks the fp32 masters itself): the
  // importance passes run a different number of batches on each rank, so no collective may
  // run inside them.
  Scopes whole_models();
};

// Members in the order they are built; each refers only to those above it.
struct Session {
  explicit Session(const config::JobConfig& job);
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  int zero_stage() const { return static_cast<int>(job.parallel.zero_stage); }

  const config::JobConfig& job;
  torch::Device device;
  torch::ScalarType compute_dtype;
  model::CausalLM teacher{nullptr}, student{nullptr};  // teacher null with model.teacher none
  bool quantized = false;                              // quant.rules attached fake quantization
  std::unique_ptr<StudentPruning> pruning;             // null without pruning
  distill::HiddenProjections projections{nullptr};
  model::NamedTensors extras;  // the projections' parameters, "distill.<name>"
  std::unique_ptr<distill::DistillLoss> loss;
  std::unique_ptr<Collective> collective;
  std::unique_ptr<FlatParameters> flat;  // the student's and the extras' trainable parameters
  Shards shards;
  std::unique_ptr<GradSync> grad_sync;
  std::unique_ptr<AdamW> optimizer;
  LrSchedule schedule;
};

// What this rank saves or restores of `targets`: the owned segments of the parameters that
// live in `flat` (its fp32 masters: no rank gathers the whole model), and, with
// `replicated`, the rest (quantizer buffers, the same on every rank) whole. Unsharded, a
// rank owns all of `flat`.
TensorSlices owned_slices(FlatParameters& flat, const model::NamedTensors& targets, bool replicated);

}  // namespace qtrain::trainer
