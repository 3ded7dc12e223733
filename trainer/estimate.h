// What a job will need, before it is submitted (qtrain --dry-run): memory per rank and time
// per step, from the model configs and the batch shape alone. The memory model is in
// docs/trainer.md (Memory and ZeRO-1), the measurements it was checked against in
// docs/performance.md.
#pragma once
#include <string>

#include "config/job_config.h"

namespace qtrain::trainer {

struct JobEstimate {
  double student_parameters = 0, teacher_parameters = 0;
  double weights_grads_optimizer_bytes = 0;  // fp32 master weights, gradients, AdamW moments (ZeRO-1: / ranks)
  int optimizer_shards = 1;                  // ranks that split the AdamW moments (ZeRO-1), else 1
  double autocast_copies_bytes = 0;          // bf16 copies of the weights during a forward (GPU)
  double teacher_bytes = 0;
  double activation_bytes = 0;               // student activations kept for backward
  double logits_bytes = 0;                   // the full-vocabulary loss temporaries
  double total_bytes = 0;
  double tokens_per_step = 0;                // all ranks
  double flops_per_step = 0;                 // all ranks
  std::string problem;                       // why no estimate could be made ("" if it could)
};

JobEstimate estimate_job(const config::JobConfig& job, int ranks, bool on_gpu);

// The estimate as YAML comment lines ("# ..."), appended to the --dry-run output.
std::string describe_estimate(const JobEstimate& e, int ranks, bool on_gpu);

}  // namespace qtrain::trainer
