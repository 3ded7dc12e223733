// A SentencePiece tokenizer.model (data::SentencePieceTokenizer::load: the protobuf, read by
// libsentencepiece inside qtrain's module, and qtrain's checks of the pieces), then a round
// trip of a fixed text. qtrain::Error is the expected answer to a bad model; anything else
// is a finding.
#include <cstddef>
#include <cstdint>

#include "common/error.h"
#include "data/sentencepiece_tokenizer.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = qtrain::fuzz::write_file("tokenizer.model", data, size);
  try {
    const auto tokenizer = qtrain::data::SentencePieceTokenizer::load(path);
    const auto ids = tokenizer->encode("Hello, world! 1234 \xc3\xa9t\xc3\xa9  tabs\tand\nlines");
    (void)tokenizer->decode(ids);
  } catch (const qtrain::Error&) {
  }
  return 0;
}
