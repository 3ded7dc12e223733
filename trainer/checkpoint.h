// Training checkpoints: one folder per step under <output_dir>/checkpoints, written
// atomically (files fsynced into "step_N.tmp.PID", then the folder renamed to "step_N" and
// the "latest" pointer file replaced), so that a crash at any moment leaves the previous
// checkpoint intact and "latest" never names a half-written one. The last K are kept.
// Layout (docs/formats.md):
//   config.json            the student's HF config (the folder is also an HF checkpoint)
//   model.safetensors      student weights (fp32, HF names) + trainable extras ("distill.*")
//   optimizer.safetensors  AdamW moments, "exp_avg.<name>" / "exp_avg_sq.<name>", full tensors
//                          whatever the rank count and ZeRO stage that wrote them
//   extras.safetensors     trainable modules that are not the student (distillation projections)
//   quant.safetensors      fake-quant state: scales, zero points, flags, learned scales
//   prune.safetensors      structured pruning masks, "layers.<i>.mlp_channels" / "layers.<i>.kv_groups"
//                          (bool; absent from checkpoints written before pruning existed)
//   trainer_state.json     step, counters, sampler state, RNG states, the resolved job config
//   manifest.json          every file's size and XXH3-64 checksum, verified on load
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "model/model_config.h"
#include "model/safetensors.h"

namespace qtrain::trainer {

struct CheckpointContents {
  model::ModelConfig student_config;
  model::NamedTensors model;      // written as is (views are fine)
  model::NamedTensors optimizer;
  model::NamedTensors extras;
  model::NamedTensors quant;
  nlohmann::json trainer_state;
  model::NamedTensors prune;  // last, so that contents written before pruning existed still read {..., state}
};

// Elements [begin, begin + target.numel()) of the flattened checkpoint tensor `name`, whose
// full shape is `shape` (a ZeRO-1 rank restores only its part of the optimizer moments).
struct TensorSlice {
  std::string name;
  std::vector<int64_t> shape;
  int64_t begin = 0;
  torch::Tensor target;  // 1-D
};

class CheckpointManager {
 public:
  CheckpointManager(std::string output_dir, int64_t keep_last);

  // Writes step_<step> (rank 0 only: the caller decides) and prunes older ones.
  std::string save(int64_t step, const CheckpointContents& contents);
  // The folder of the newest valid checkpoint, if any ("auto" resume): the one "latest"
  // names if it verifies against its manifest, else the newest step folder that does (with
  // a warning naming what was skipped). Throws when checkpoints exist but none verifies.
  std::optional<std::string> latest() const;
  const std::string& dir() const { return dir_; }

  static std::string step_name(int64_t step);

 private:
  std::string dir_;
  int64_t keep_last_;
};

// A checkpoint folder, verified against its manifest; tensors are zero-copy views.
class LoadedCheckpoint {
 public:
  static LoadedCheckpoint open(const std::string& dir);
  const nlohmann::json& trainer_state() const { return trainer_state_; }
  // Copies every named tensor of `file` ("model", "optimizer", "extras", "quant" or "prune") into `targets`,
  // which must match it exactly in names and shapes. A file that the checkpoint lacks (prune.safetensors of
  // an older one) restores as empty.
  void restore(const std::string& file, const model::NamedTensors& targets) const;
  // Copies the slices into their targets; the file must hold exactly `tensor_count` tensors.
  void restore_slices(const std::string& file, const std::vector<TensorSlice>& slices, int64_t tensor_count) const;
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  nlohmann::json trainer_state_;
};

// XXH3-64 of a file's bytes, as 16 hex digits.
std::string file_checksum(const std::string& path);

}  // namespace qtrain::trainer
