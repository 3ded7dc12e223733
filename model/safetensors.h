// Reader and writer for the safetensors format (https://github.com/huggingface/safetensors):
// u64 little-endian header length N, N bytes of JSON header, then the raw tensor bytes.
// The reader memory-maps the file, validates the whole header before any tensor is
// touched, and hands out zero-copy tensors. Layout details: docs/formats.md.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace qtrain::model {

// One safetensors element type: its name in the header, its size, and the LibTorch type
// that holds it (none where the linked LibTorch lacks it, e.g. F8_E4M3 on 1.13).
struct StDtype {
  const char* name;
  int64_t element_size;
  std::optional<torch::ScalarType> torch_type;
};
const StDtype* find_st_dtype(const std::string& name);        // nullptr if unknown
const StDtype& st_dtype_for(torch::ScalarType type);           // throws for unsupported types

struct TensorEntry {
  std::string name;
  const StDtype* dtype = nullptr;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets into the data section
};

class SafetensorsFile {
 public:
  // Maps and validates `path`; throws qtrain::Error naming the file on any defect.
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  const std::vector<TensorEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const { return index_.count(name) > 0; }
  const TensorEntry& entry(const std::string& name) const;

  // Zero-copy CPU tensor over the mapping (copy-on-write: writing to it never touches the file).
  // The tensor keeps the mapping alive.
  torch::Tensor tensor(const std::string& name) const;
  // The tensor's bytes as a 1-D uint8 tensor (for element types LibTorch cannot hold).
  torch::Tensor raw_bytes(const std::string& name) const;

 private:
  SafetensorsFile() = default;
  void parse_header(uint64_t header_len);
  std::string path_;
  void* map_ = nullptr;
  std::size_t map_size_ = 0;
  const uint8_t* data_ = nullptr;  // start of the data section
  std::vector<TensorEntry> entries_;
  std::map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
  std::weak_ptr<SafetensorsFile> self_;
};

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// Writes tensors (any device, any layout; copied to contiguous CPU) atomically to `path`.
// Data are ordered by element size (largest first), then name, so every tensor is aligned.
// `raw_dtypes` declares uint8 tensors as another 1-byte element type ("F8_E4M3", "F8_E5M2"):
// how FP8 data are written where LibTorch has no float8 type (1.13).
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {},
                      const std::map<std::string, std::string>& raw_dtypes = {});

// Number of bytes save_safetensors would store for a tensor.
int64_t stored_bytes(const torch::Tensor& t);

}  // namespace qtrain::model
