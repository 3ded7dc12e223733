// The normalizers of tokenizer.json that byte-level BPE tokenizers use: none (GPT-2, Llama 3)
// and NFC (Qwen2), the latter through utf8proc.
#pragma once
#include <string>
#include <string_view>

namespace qtrain::data {

enum class Normalizer { none, nfc };

// `text` normalized. Ill-formed UTF-8 is returned unchanged (utf8proc refuses it, and
// tokenizers cannot be given it at all).
std::string normalize(Normalizer normalizer, std::string_view text);

// True when normalize() would return `text` unchanged without looking further (no normalizer,
// or ASCII text, which NFC leaves alone).
bool normalization_is_identity(Normalizer normalizer, std::string_view text);

}  // namespace qtrain::data
