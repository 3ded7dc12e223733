// The counters that, with weights, optimizer moments and the sampler state, make a run
// resumable exactly; stored in a checkpoint's trainer_state.json.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "data/train_loader.h"

namespace qtrain::trainer {

struct TrainingState {
  int64_t step = 0;            // optimizer steps done (updates and skips)
  int64_t optimizer_steps = 0; // AdamW updates done (for bias correction)
  int64_t skipped_steps = 0;   // steps skipped for a non-finite loss or gradient
  int64_t tokens_seen = 0;
  data::SamplerState sampler;

  nlohmann::json to_json() const;
  static TrainingState from_json(const nlohmann::json& j);
};

// The default CPU generator's state as hex text, and back.
std::string cpu_rng_state();
void set_cpu_rng_state(const std::string& hex);

}  // namespace qtrain::trainer
