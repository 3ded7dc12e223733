// What a job will need, before it is submitted (qtrain --dry-run): memory per rank and time
// per step, from the model configs and the batch shape alone. The memory model is in
// docs/trainer.md (Memory and ZeRO), the measurements it was checked against in
// docs/performance.md.
#pragma once
#include <string>

#include "config/job_config.h"

namespace qtrain::trainer {

struct JobEstimate {
  double student_parameters = 0, teacher_parameters = 0;
  int zero_stage = 0;
  int shards = 1;                            // ranks that split the sharded state (ZeRO), else 1
  double weights_bytes = 0;                  // fp32 master weights (stage 3: / ranks)
  double grads_bytes = 0;                    // fp32 gradients (stages 2, 3: / ranks, plus staging buckets)
  double optimizer_bytes = 0;                // AdamW moments (stages 1-3: / ranks) and the update's scratch
  double weights_grads_optimizer_bytes = 0;  // the three above (on the device unless offloaded)
  bool offloaded = false;                    // parallel.offload_optimizer: those three in host memory
  double host_bytes = 0;                     // host memory they take per rank when offloaded
  double gathered_bytes = 0;                 // stage 3: the root unit and two decoder layers gathered at once
  double autocast_copies_bytes = 0;          // bf16 copies of the weights kept for backward (GPU, stages 0-2)
  double fake_quant_bytes = 0;               // fake-quantized weights kept for backward (with quant.rules)
  double pruning_peak_bytes = 0;             // ZeRO-3: the importance passes' peak, both models whole (else 0)
  double teacher_bytes = 0;                  // its weights (sharded: its shard and gathered units)
  bool teacher_sharded = false;
  double activation_bytes = 0;               // student activations kept for backward
  double logits_bytes = 0;                   // the loss temporaries over the vocabulary (one chunk of tokens)
  double collective_bytes = 0;               // CPU: MPI's temporaries for the collectives in flight
  double total_bytes = 0;                    // device memory (host memory on the CPU)
  double tokens_per_step = 0;                // all ranks
  double flops_per_step = 0;                 // all ranks
  std::string problem;                       // why no estimate could be made ("" if it could)
};

JobEstimate estimate_job(const config::JobConfig& job, int ranks, bool on_gpu);

// The estimate as YAML comment lines ("# ..."), appended to the --dry-run output.
std::string describe_estimate(const JobEstimate& e, int ranks, bool on_gpu);

}  // namespace qtrain::trainer
