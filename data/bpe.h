// Byte-level BPE: a word's bytes start as one symbol each (GPT-2's byte alphabet) and the
// lowest-ranked adjacent pair is merged until none is left, as Hugging Face tokenizers' BPE
// model does (models/bpe/word.rs, merge_all): symbols in a linked list, candidate merges in
// a min-heap by (rank, position), stale entries skipped; O(n log n) per word.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "data/flat_hash.h"

namespace qtrain::data {

struct BpeSpec {
  std::vector<std::pair<std::string, int32_t>> vocab;          // token (byte-level alphabet) -> id
  std::vector<std::pair<std::string, std::string>> merges;     // in rank order
  std::optional<std::string> unk_token;                        // for bytes missing from the vocab
  bool fuse_unk = false;
  bool ignore_merges = false;  // a word that is itself in the vocab is one token (Llama 3)
};

class BpeModel {
 public:
  // Throws qtrain::Error (key "model.merges" / "model.vocab") for merges or tokens that do not
  // fit the vocabulary; `file` names the source in errors.
  BpeModel(const BpeSpec& spec, const std::string& file);

  // Appends the ids of one pre-tokenized word, given as raw bytes. Thread-safe.
  void encode_word(std::string_view word, std::vector<int32_t>* ids) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  // The token of an id, or nullptr where the vocabulary has none.
  const std::string* id_to_token(int32_t id) const;
  int32_t max_id() const { return static_cast<int32_t>(id_to_token_.size()) - 1; }

 private:
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  void merge_all(std::vector<int32_t>* symbols) const;

  FlatStringMap<int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_token_;
  FlatU64Map<Merge> merges_;
  std::array<int32_t, 256> byte_ids_{};  // id of each byte's one-symbol token, -1 if none
  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
};

}  // namespace qtrain::data
