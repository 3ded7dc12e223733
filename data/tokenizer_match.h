// Does a token file belong to a tokenizer? Token files record the fingerprint of the
// tokenizer that made them (docs/formats.md); a consumer that also holds the model's
// tokenizer compares the two before training or evaluating, so that ids made by another
// vocabulary are caught instead of silently meaning other words.
#pragma once
#include "data/token_file.h"
#include "data/tokenizer.h"

namespace qtrain::data {

// Throws qtrain::Error naming the file and both fingerprints when the file's
// tokenizer_fingerprint attribute differs from tokenizer.fingerprint() (the fingerprint
// covers the vocabulary, so equal fingerprints mean equal vocab sizes too). A file without a
// fingerprint (written by another tool) cannot be checked: returns false; true otherwise.
bool check_tokenizer_fingerprint(const TokenFile& tokens, const Tokenizer& tokenizer);

}  // namespace qtrain::data
