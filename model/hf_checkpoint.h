// Hugging Face checkpoint folders: config.json plus model.safetensors, or shards listed in
// model.safetensors.index.json. Reading is memory-mapped and validated; writing is atomic
// per file and shards by size, as transformers' save_pretrained does.
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
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

// Copies the checkpoint's tensors into the model's parameters (converting dtype and device).
// Every parameter must be present with its shape; a tensor the model has no place for is an error.
void load_weights(CausalLMImpl& model, const HFCheckpoint& checkpoint);

struct LoadOptions {
  torch::Device device = torch::kCPU;
  torch::ScalarType dtype = torch::kFloat32;
};
CausalLM load_causal_lm(const std::string& dir, const LoadOptions& options = {});

struct SaveOptions {
  int64_t max_shard_bytes = int64_t{5} << 30;  // transformers' default: 5 GB
  std::optional<torch::ScalarType> dtype;      // convert floating tensors to this dtype
};
// Writes config.json and the weights (one file, or shards plus index) into `dir`, which is created.
void save_hf_checkpoint(const std::string& dir, const ModelConfig& config, const NamedTensors& tensors,
                        const SaveOptions& options = {});
// The model's tensors under their Hugging Face names (a tied lm_head is left out).
NamedTensors hf_state(CausalLMImpl& model);
void save_causal_lm(CausalLMImpl& model, const std::string& dir, const SaveOptions& options = {});

std::string dtype_name(torch::ScalarType t);          // float32 | bfloat16 | float16 | ...
torch::ScalarType parse_dtype(const std::string& s);  // fp32/float32, bf16/bfloat16, fp16/float16

}  // namespace qtrain::model
