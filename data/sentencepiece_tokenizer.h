// A SentencePiece tokenizer.model (Llama 2, Mistral) behind the Tokenizer interface: a thin
// adapter over Debian's libsentencepiece, which does all the work. The library is reached
// through the qtrain_sentencepiece module (data/sentencepiece/backend.h says why).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "data/tokenizer.h"

namespace qtrain::data {

namespace sentencepiece_backend {
class Processor;
}

class SentencePieceTokenizer final : public Tokenizer {
 public:
  // Throws qtrain::Error naming the file when the model (or the module) cannot be loaded.
  static std::unique_ptr<SentencePieceTokenizer> load(const std::string& path);
  ~SentencePieceTokenizer() override;

  // SentencePiece's own encoding (what spm_encode --output_format=id prints). Thread-safe:
  // the processor's Encode is const and keeps no per-call state.
  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  int64_t vocab_size() const override;
  std::string fingerprint() const override { return fingerprint_; }

 private:
  SentencePieceTokenizer() = default;
  std::unique_ptr<sentencepiece_backend::Processor> processor_;
  std::string fingerprint_;
};

// Where the qtrain_sentencepiece module is looked for: $QTRAIN_SENTENCEPIECE_MODULE, the
// build tree's copy, then next to the running executable.
std::vector<std::string> sentencepiece_module_candidates();

}  // namespace qtrain::data
