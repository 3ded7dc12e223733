// check_tokenizer_fingerprint(): the file attribute against the tokenizer's fingerprint.
#include "data/tokenizer_match.h"

#include "common/error.h"

namespace qtrain::data {

bool check_tokenizer_fingerprint(const TokenFile& tokens, const Tokenizer& tokenizer) {
  const auto stored = tokens.tokenizer_fingerprint();
  if (!stored) return false;
  if (*stored != tokenizer.fingerprint())
    throw Error("token file was made with another tokenizer: its tokenizer_fingerprint is " + *stored + ", " +
                tokenizer.source() + " has " + tokenizer.fingerprint())
        .file(tokens.path())
        .key(kTokenizerFingerprintAttribute)
        .expected("token files made by qdata with the model's tokenizer");
  return true;
}

}  // namespace qtrain::data
