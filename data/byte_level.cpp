// Tables for GPT-2's byte-level alphabet, built once from the reference definition.
#include "data/byte_level.h"

#include <array>

#include "data/utf8.h"

namespace qtrain::data::byte_level {
namespace {

struct Tables {
  std::array<char32_t, 256> to_char{};
  std::array<std::string, 256> to_utf8;
  Tables() {
    // bytes_to_unicode(): printable Latin-1 bytes keep their code point, the rest are numbered
    // from 256 upwards in byte order.
    auto printable = [](int b) {
      return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    };
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      to_char[b] = printable(b) ? static_cast<char32_t>(b) : next++;
      utf8::append(to_utf8[b], to_char[b]);
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

char32_t byte_to_char(uint8_t b) { return tables().to_char[b]; }

int char_to_byte(char32_t cp) {
  if (cp < 256) {
    const auto b = static_cast<uint8_t>(cp);
    return tables().to_char[b] == cp ? b : -1;
  }
  if (cp < 256 + 68) {
    // The 68 remapped bytes, in increasing order, took U+0100..U+0143.
    const auto& t = tables();
    for (int b = 0; b < 256; ++b)
      if (t.to_char[b] == cp) return b;
  }
  return -1;
}

std::string encode(std::string_view bytes) {
  const auto& t = tables();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += t.to_utf8[static_cast<uint8_t>(c)];
  return out;
}

std::string decode_token(std::string_view token) {
  std::string bytes;
  bytes.reserve(token.size());
  for (size_t i = 0; i < token.size();) {
    const size_t n = utf8::sequence_length(token, i);
    const int b = n ? char_to_byte(utf8::decode(token, i, n)) : -1;
    if (b < 0) return std::string(token);
    bytes += static_cast<char>(b);
    i += n;
  }
  return bytes;
}

}  // namespace qtrain::data::byte_level
