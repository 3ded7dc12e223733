// GPT-2's byte-level alphabet (bytes_to_unicode in openai/gpt-2's encoder.py, ByteLevel in
// Hugging Face tokenizers): each of the 256 bytes stands for one printable code point, so
// byte-level BPE vocabularies hold no spaces or control characters.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace qtrain::data::byte_level {

// The code point that stands for byte b ('!'..'~', '¡'..'¬', '®'..'ÿ' for themselves, the
// other 68 bytes for U+0100 onwards, in byte order).
char32_t byte_to_char(uint8_t b);

// The byte a code point stands for, or -1 if it is not in the alphabet.
int char_to_byte(char32_t cp);

// The UTF-8 text of the code points standing for `bytes` (what BPE vocabularies are written in).
std::string encode(std::string_view bytes);

// One token's bytes, as the ByteLevel decoder gives them: a token made only of alphabet code
// points turns back into the bytes they stand for; any other token (e.g. an added token with a
// space in it) stays as its own UTF-8 bytes.
std::string decode_token(std::string_view token);

}  // namespace qtrain::data::byte_level
