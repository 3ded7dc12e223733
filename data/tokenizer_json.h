// Reads a Hugging Face tokenizer.json into the typed parts of a byte-level BPE tokenizer, and
// refuses everything else (WordPiece, Unigram, Metaspace, byte_fallback, ...) with a
// qtrain::Error that names the file and the key. Format: huggingface/tokenizers' serde layout.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "data/added_vocabulary.h"
#include "data/bpe.h"
#include "data/normalizer.h"
#include "data/pre_tokenizer.h"

namespace qtrain::data {

struct HfTokenizerSpec {
  Normalizer normalizer = Normalizer::none;
  PreTokenizerSpec pre_tokenizer;
  BpeSpec model;
  std::vector<AddedToken> added_tokens;
  // What the post-processor puts around a single sequence (TemplateProcessing's "single",
  // RobertaProcessing's and BertProcessing's cls/sep).
  std::vector<int32_t> special_prefix, special_suffix;
};

// Parses a JSON file; throws qtrain::Error naming the file when it cannot be read or parsed.
nlohmann::json read_json_file(const std::string& path);

// The typed spec of a byte-level BPE tokenizer.json; `file` names it in errors.
HfTokenizerSpec parse_tokenizer_json(const nlohmann::json& json, const std::string& file);

// True if the pre-tokenizer has no ByteLevel step (e.g. Llama 2's Metaspace-based
// tokenizer.json, whose tokenizer.model is loaded instead when it is there).
bool lacks_byte_level(const nlohmann::json& json);

}  // namespace qtrain::data
