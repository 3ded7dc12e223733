// Tokenizer fingerprints: XXH3-128 (xxHash, https://xxhash.com) of a canonical byte stream
// of everything that decides the ids, so that a token file made with another tokenizer than
// the model's is caught. The stream's layout is documented in docs/tokenizer.md.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace qtrain::data {

class FingerprintBuilder {
 public:
  // `kind` starts the stream, e.g. "qtrain-tokenizer/hf-byte-level-bpe/v1".
  explicit FingerprintBuilder(std::string_view kind);
  ~FingerprintBuilder();

  // Each field is its byte length (u64 little-endian) followed by its bytes.
  FingerprintBuilder& add(std::string_view field);
  // Integers and flags go in as their decimal text.
  FingerprintBuilder& add_int(int64_t value);

  // "xxh3-128:" followed by 32 lowercase hex digits.
  std::string finish();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace qtrain::data
