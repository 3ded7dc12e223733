// A Hugging Face tokenizer.json with a byte-level BPE model (GPT-2, Llama 3, Qwen2), run the
// way huggingface/tokenizers runs it: added tokens cut out, normalizer, pre-tokenizer, BPE
// per word (through a shared word cache), and the post-processor's special tokens on request.
#pragma once
#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/added_vocabulary.h"
#include "data/bpe.h"
#include "data/normalizer.h"
#include "data/pre_tokenizer.h"
#include "data/tokenizer.h"
#include "data/tokenizer_json.h"
#include "data/word_cache.h"

namespace qtrain::data {

class HfTokenizer final : public Tokenizer {
 public:
  // Words each thread's cache holds at most (some 80 bytes each: 20 MB per thread when full).
  static constexpr size_t kWordCacheCapacity = size_t{1} << 18;

  // `file` names the source in errors and in source().
  HfTokenizer(const HfTokenizerSpec& spec, const std::string& file);
  static std::unique_ptr<HfTokenizer> load(const std::string& path);

  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(token_bytes_.size()); }
  std::string fingerprint() const override { return fingerprint_; }

  // The id of a token (added tokens first, then the model's vocabulary), if there is one.
  std::optional<int32_t> token_to_id(std::string_view token) const;

  // Takes BOS/EOS from a tokenizer_config.json ("bos_token"/"eos_token": a name, an object
  // with "content", or null); keys it lacks leave the guess from tokenizer.json in place.
  void apply_tokenizer_config(const nlohmann::json& config, const std::string& file);

 private:
  void encode_piece(std::string_view piece, std::vector<int32_t>* ids) const;
  void encode_word(std::string_view word, std::vector<int32_t>* ids) const;
  void guess_bos_eos();

  Normalizer normalizer_;
  PreTokenizer pre_tokenizer_;
  BpeModel model_;
  AddedVocabulary added_;
  std::vector<std::string> token_bytes_;  // what each id decodes to, before UTF-8 repair
  std::vector<bool> has_token_;
  std::string fingerprint_;
  WordCache cache_;
};

// The fingerprint of a parsed tokenizer.json (docs/tokenizer.md, "Fingerprint").
std::string hf_fingerprint(const HfTokenizerSpec& spec);

}  // namespace qtrain::data
