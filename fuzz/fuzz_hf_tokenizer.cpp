// A Hugging Face tokenizer.json (data::parse_tokenizer_json, data::HfTokenizer), then a round
// trip of a fixed text through the tokenizer it describes. Malformed JSON and qtrain::Error
// are expected answers; anything else is a finding.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "data/hf_tokenizer.h"
#include "data/tokenizer_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(data, data + size);
  } catch (const nlohmann::json::exception&) {  // as the loaders catch it: parse_error, out_of_range
    return 0;
  }
  try {
    qtrain::data::HfTokenizer tokenizer(qtrain::data::parse_tokenizer_json(j, "tokenizer.json"), "tokenizer.json");
    const auto ids = tokenizer.encode("Hello, world! 1234 \xc3\xa9t\xc3\xa9  tabs\tand\nlines <|endoftext|>");
    (void)tokenizer.decode(ids);
  } catch (const qtrain::Error&) {
  }
  return 0;
}
