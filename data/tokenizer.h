// The tokenizer interface the corpus tool and the evaluators use, and the factory that loads
// one from a Hugging Face tokenizer.json (byte-level BPE: GPT-2, Llama 3, Qwen2), a
// SentencePiece tokenizer.model (Llama 2, Mistral), or a model folder holding either.
// What is supported, and the fingerprint's definition: docs/tokenizer.md.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qtrain::data {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // The ids of `text` with nothing added: what Hugging Face tokenizers' encode(text,
  // add_special_tokens=False) gives. Special tokens written in the text are recognized.
  // Thread-safe.
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;

  // encode() framed by the ids the tokenizer adds around a sequence (its post-processor, e.g.
  // Llama 3's <|begin_of_text|>): add_special_tokens=True.
  std::vector<int32_t> encode_with_special_tokens(std::string_view text) const;

  // The text of `ids`, special tokens included; ill-formed UTF-8 (a sequence cut between
  // tokens) becomes U+FFFD. Throws qtrain::Error for an id outside [0, vocab_size()).
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;

  // One more than the largest id (model vocabulary and added tokens): the embedding rows needed.
  virtual int64_t vocab_size() const = 0;

  // A stable hash of what decides the ids (docs/tokenizer.md), e.g. "xxh3-128:0123...".
  virtual std::string fingerprint() const = 0;

  std::optional<int32_t> bos_id() const { return bos_id_; }
  std::optional<int32_t> eos_id() const { return eos_id_; }
  // The ids encode_with_special_tokens() puts before and after the text.
  const std::vector<int32_t>& special_prefix() const { return special_prefix_; }
  const std::vector<int32_t>& special_suffix() const { return special_suffix_; }
  // The file the tokenizer was loaded from.
  const std::string& source() const { return source_; }

 protected:
  std::optional<int32_t> bos_id_, eos_id_;
  std::vector<int32_t> special_prefix_, special_suffix_;
  std::string source_;
};

// Loads a tokenizer.json, a tokenizer.model, or a folder with either (tokenizer.json is
// preferred unless it is SentencePiece-style and tokenizer.model is there too). BOS/EOS come
// from tokenizer_config.json next to the file when present. Throws qtrain::Error naming the
// file (and the key, for a malformed tokenizer.json).
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

}  // namespace qtrain::data
