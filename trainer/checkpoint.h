// Training checkpoints: one folder per step under <output_dir>/checkpoints, written
// atomically by every rank together, so that a crash at any moment leaves the previous
// checkpoint intact and "latest" never names a half-written one. Each rank writes the part
// of the training state it owns (ZeRO: its segments of the fp32 masters, the AdamW moments,
// the trainable extras; rank 0 also the replicated tensors) into its own shard file, fsynced,
// in "step_N.tmp.PID"; once every rank's shard is durable, rank 0 writes the manifest and
// renames the folder to "step_N", then replaces the "latest" pointer. The last K are kept.
// No rank gathers the whole state to save it, and a checkpoint resumes on any rank count and
// ZeRO stage: a rank copies what its own layout needs from whichever shards hold it.
// Layout ("qtrain-checkpoint-2", docs/formats.md):
//   config.json                          the student's HF config
//   shard-0000R-of-0000N.safetensors     rank R's pieces: 1-D tensors "<section>/<name>@<begin>",
//                                        elements [begin, begin + numel) of the flattened tensor,
//                                        listed with their full shapes in the "qtrain.pieces"
//                                        metadata. Sections: model (student weights, fp32, HF
//                                        names), optimizer ("exp_avg.<name>", "exp_avg_sq.<name>"),
//                                        extras (distillation projections), quant (fake-quant
//                                        state), prune (structured pruning masks)
//   trainer_state.json                   step, counters, sampler state, RNG states, the job config
//   manifest.json                        every file's size and XXH3-64 checksum
// Checkpoints of the first layout ("qtrain-checkpoint-1": one whole-tensor file per section,
// "model.safetensors", "optimizer.safetensors", ...) still load.
#pragma once
#include <nlohmann/json.hpp>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/model_config.h"
#include "model/safetensors.h"

namespace qtrain::trainer {

// Elements [begin, begin + target.numel()) of the flattened checkpoint tensor `name`, whose
// full shape is `shape`: what a rank saves of a tensor it owns a part of, or restores of it.
struct TensorSlice {
  std::string name;
  std::vector<int64_t> shape;
  int64_t begin = 0;
  torch::Tensor target;  // 1-D (or whole, when begin is 0 and it holds every element)
};
using TensorSlices = std::vector<TensorSlice>;
// Whole tensors as slices.
TensorSlices whole(const model::NamedTensors& tensors);

// The sections of a checkpoint, in the order they are written.
inline const std::vector<std::string>& checkpoint_sections() {
  static const std::vector<std::string> sections = {"model", "optimizer", "extras", "quant", "prune"};
  return sections;
}

struct CheckpointContents {
  model::ModelConfig student_config;   // written by rank 0
  nlohmann::json trainer_state;        // written by rank 0
  std::map<std::string, TensorSlices> sections;  // what this rank writes, by section (views are fine)
};

class CheckpointManager {
 public:
  CheckpointManager(std::string output_dir, int64_t keep_last);

  // Writes step_<step> and prunes older ones. Every rank calls it (collective over
  // common/dist.h) with its own part; a failure on any rank fails it on all, leaving the
  // previous checkpoints as they were.
  std::string save(int64_t step, const CheckpointContents& contents);
  // The folder of the newest valid checkpoint, if any ("auto" resume): the one "latest"
  // names if it verifies against its manifest, else the newest step folder that does (with
  // a warning naming what was skipped). Throws when checkpoints exist but none verifies.
  std::optional<std::string> latest() const;
  // Whether the folder holds any checkpoint (valid or not) or a "latest" pointer; reads no file.
  bool any() const;
  const std::string& dir() const { return dir_; }

  static std::string step_name(int64_t step);

 private:
  std::string dir_;
  int64_t keep_last_;
};

// A checkpoint folder, verified against its manifest.
class LoadedCheckpoint {
 public:
  enum class Verify {
    everything,  // every file's size and checksum now
    on_read,     // sizes now; a shard's checksum when a restore first reads from it (a rank
                 // of a large job reads only the shards that hold its part)
  };
  static LoadedCheckpoint open(const std::string& dir, Verify verify = Verify::everything);
  const nlohmann::json& trainer_state() const { return trainer_state_; }
  // Copies every tensor of `section` ("model", "optimizer", "extras", "quant" or "prune")
  // into `targets`, which must match it exactly in names and shapes. A section that the
  // checkpoint lacks (prune of an older one) restores as empty.
  void restore(const std::string& section, const model::NamedTensors& targets) const;
  // Copies the slices into their targets, from whichever shards hold those elements; the
  // section must hold exactly `tensor_count` tensors.
  void restore_slices(const std::string& section, const TensorSlices& slices, int64_t tensor_count) const;
  // The section's tensors, whole (for tools and tests; a training rank restores its part).
  model::NamedTensors tensors(const std::string& section) const;
  const std::string& dir() const { return dir_; }

 private:
  struct Piece {
    size_t file;  // index into files_
    std::string key;
    std::vector<int64_t> shape;
    int64_t begin = 0, length = 0;
  };
  struct File {
    std::string path, checksum;  // checksum "" when not to be checked on read
    std::shared_ptr<model::SafetensorsFile> st;
    mutable bool verified = false;
  };
  const model::SafetensorsFile& read(size_t file) const;
  std::string dir_;
  nlohmann::json trainer_state_;
  std::vector<File> files_;
  std::map<std::string, std::map<std::string, std::vector<Piece>>> pieces_;  // section -> name -> pieces
};

// XXH3-64 of a file's bytes; as 16 hex digits (the manifest's form).
uint64_t file_digest(const std::string& path);
std::string hex_digest(uint64_t digest);
std::string file_checksum(const std::string& path);

}  // namespace qtrain::trainer
