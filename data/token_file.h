// Token files (docs/formats.md): HDF5 with a 1-D dataset `input_ids` of int32 (uint16 and
// int64 accepted too). The reader validates the layout once and reads ranges on demand,
// so files far larger than memory are fine. Not thread-safe (HDF5 is built serial):
// one reader per thread.
#pragma once
#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace qtrain::data {

inline constexpr const char* kInputIdsDataset = "input_ids";
inline constexpr const char* kVocabSizeAttribute = "vocab_size";
inline constexpr const char* kTokenizerFingerprintAttribute = "tokenizer_fingerprint";

class TokenFile {
 public:
  // Opens and validates `path`; throws qtrain::Error naming the file and dataset on any defect.
  // The file is parsed first in a forked child (common/isolated_call.h), its metadata and
  // its first and last chunks: libhdf5 1.10 crashes on some damaged or forged metadata
  // (fuzz/known-issues), which then ends as an Error naming the file, as does a child that
  // is still parsing after `check_timeout`.
  static TokenFile open(const std::string& path,
                        std::chrono::milliseconds check_timeout = std::chrono::minutes(5));
  ~TokenFile();
  TokenFile(TokenFile&&) noexcept;
  TokenFile& operator=(TokenFile&&) noexcept;

  const std::string& path() const { return path_; }
  int64_t size() const { return size_; }  // number of tokens
  // Tokens [begin, begin + count) as an int64 CPU tensor.
  torch::Tensor read(int64_t begin, int64_t count) const;
  // Attributes of the dataset, when the writer stored them (qdata always does).
  std::optional<int64_t> vocab_size() const { return vocab_size_; }
  std::optional<std::string> tokenizer_fingerprint() const { return fingerprint_; }
  // The stored element type: "int32", "uint16" or "int64".
  const std::string& stored_type() const { return stored_type_; }

 private:
  TokenFile() = default;
  // The reader itself, in this process (what the child runs before the caller does).
  static TokenFile open_in_process(const std::string& path);
  // Tokens [begin, begin + count) converted to int64 into `out` (no LibTorch: the child
  // of open() calls it too).
  void read_into(int64_t begin, int64_t count, int64_t* out) const;
  struct Handles;
  std::unique_ptr<Handles> h_;
  std::string path_;
  std::string stored_type_;
  int64_t size_ = 0;
  std::optional<int64_t> vocab_size_;
  std::optional<std::string> fingerprint_;
};

// Throws qtrain::Error naming the file when the vocab_size it declares (qdata stores its
// tokenizer's) exceeds the model's `vocab_size`: ids the model has no embedding for. Files
// without the attribute are checked as they are read (check_token_range).
void check_vocabulary(const TokenFile& file, int64_t vocab_size);

// Throws qtrain::Error if any id in `ids` is negative or >= vocab_size, naming the file,
// the first offending position (offset + index) and the value.
void check_token_range(const torch::Tensor& ids, int64_t vocab_size, const std::string& path, int64_t offset);

}  // namespace qtrain::data
