// Hugging Face checkpoint folders: config.json plus model.safetensors, or shards listed in
// model.safetensors.index.json. Reading is memory-mapped and validated; writing is atomic
// per file and shards by size, as transformers' save_pretrained does.
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/causal_lm.h"
#include "model/model_config.h"
#include "model/safetensors.h"

namespace qtrain::model {

class HFCheckpoint {
 public:
  // Opens `dir`, parses config.json and the weight files' headers (not the data).
  static HFCheckpoint open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const ModelConfig& config() const { return config_; }
  std::vector<std::string> tensor_names() const;
  bool contains(const std::string& name) const { return file_of_.count(name) > 0; }
  torch::Tensor tensor(const std::string& name) const;  // zero-copy view of the mapped file
  const SafetensorsFile& file_of(const std::string& name) const;

 private:
  std::string dir_;
  ModelConfig config_;
  std::map<std::string, std::shared_ptr<SafetensorsFile>> file_of_;
};

// Names that some checkpoints carry but that are derived state, not weights (rotary inv_freq).
bool is_derived_buffer(const std::string& name);

// Every parameter must be present with its shape, as floating point; a tensor the model has
// no place for is an error (qtrain::Error naming the file and the tensor). Reads no data.
void check_weights(CausalLMImpl& model, const HFCheckpoint& checkpoint);
// Checks, then copies the checkpoint's tensors into the model's parameters (converting dtype
// and device).
void load_weights(CausalLMImpl& model, const HFCheckpoint& checkpoint);

struct LoadOptions {
  torch::Device device = torch::kCPU;
  torch::ScalarType dtype = torch::kFloat32;
};
CausalLM load_causal_lm(const std::string& dir, const LoadOptions& options = {});

struct SaveOptions {
  int64_t max_shard_bytes = int64_t{5} << 30;  // transformers' default: 5 GB
  std::optional<torch::ScalarType> dtype;      // convert floating tensors to this dtype
  // Sharded or streamed weights: save_causal_lm reads the model unit by unit, each made whole
  // by `gather` while it is read (every rank runs it then, the gathers being collective), and
  // only the rank with `write` writes. Empty: the weights are whole already.
  GatherUnit gather;
  bool write = true;
};
// Streams weights into a Hugging Face folder as transformers' save_pretrained lays them out:
// a shard is written as soon as the next tensor would make it exceed `max_shard_bytes`, so
// only one shard's tensors are held at a time; finish() names the shards
// model-0000K-of-0000N.safetensors (N known only then) and writes
// model.safetensors.index.json, or, with one shard, names it model.safetensors. Files of an
// earlier export in `dir` that the new layout does not use are removed.
class WeightShardWriter {
 public:
  // Partial shards that a failed earlier writer left in `dir` are removed first, and this
  // writer's own if it is destroyed before finish().
  WeightShardWriter(std::string dir, int64_t max_shard_bytes = int64_t{5} << 30);
  ~WeightShardWriter();
  WeightShardWriter(const WeightShardWriter&) = delete;
  WeightShardWriter& operator=(const WeightShardWriter&) = delete;
  // Copies `tensor` to the CPU (the caller may free it afterwards); `raw_dtype`: the element
  // type of uint8 data that LibTorch cannot hold (save_safetensors).
  void add(const std::string& name, torch::Tensor tensor, const std::string& raw_dtype = "");
  // Returns the bytes of all tensors written.
  int64_t finish();

 private:
  void flush();
  std::string dir_;
  int64_t max_bytes_, in_shard_ = 0, total_ = 0;
  bool finished_ = false;
  NamedTensors pending_;
  std::map<std::string, std::string> raw_dtypes_;
  std::vector<std::vector<std::string>> shards_;  // names written into each shard
};

inline int64_t mib_to_bytes(double mib) { return static_cast<int64_t>(mib * 1048576.0); }

// Writes config.json and the weights (one file, or shards plus index) into `dir`, which is created.
void save_hf_checkpoint(const std::string& dir, const ModelConfig& config, const NamedTensors& tensors,
                        const SaveOptions& options = {});
// The model's tensors under their Hugging Face names (a tied lm_head is left out).
NamedTensors hf_state(CausalLMImpl& model);
// config.json and hf_state, unit by unit (SaveOptions::gather), in name order within a unit.
void save_causal_lm(CausalLMImpl& model, const std::string& dir, const SaveOptions& options = {});

std::string dtype_name(torch::ScalarType t);          // float32 | bfloat16 | float16 | ...
torch::ScalarType parse_dtype(const std::string& s);  // fp32/float32, bf16/bfloat16, fp16/float16

}  // namespace qtrain::model
