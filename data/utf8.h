// UTF-8 helpers for the tokenizers: stepping over code points, the Unicode White_Space
// property, and lossy decoding (each maximal invalid subpart becomes one U+FFFD, as Rust's
// String::from_utf8_lossy does, and with it Hugging Face tokenizers' decoders).
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace qtrain::data::utf8 {

// Length (1-4) of the well-formed UTF-8 sequence that starts at s[i], or 0 if none does.
size_t sequence_length(std::string_view s, size_t i);

// Decodes the well-formed sequence of `length` bytes at s[i].
char32_t decode(std::string_view s, size_t i, size_t length);

// Appends the UTF-8 encoding of a code point (< 0x110000).
void append(std::string& out, char32_t cp);

// Unicode's White_Space property (stable since Unicode 6.3): what \s means in Rust's regex
// crate and in Oniguruma, both of which Hugging Face tokenizers uses.
bool is_white_space(char32_t cp);

// True if every byte belongs to a well-formed sequence.
bool is_valid(std::string_view s);

// `bytes` with every ill-formed part replaced by U+FFFD (one per maximal subpart).
std::string to_valid_lossy(std::string_view bytes);

}  // namespace qtrain::data::utf8
