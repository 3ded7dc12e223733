// GPT-2's byte alphabet: a bijection with the values of openai/gpt-2's bytes_to_unicode().
#include <gtest/gtest.h>

#include <set>

#include "data/byte_level.h"

namespace qtrain::data {
namespace {

TEST(ByteLevel, AlphabetMatchesGpt2) {
  // bytes_to_unicode(): space -> U+0120 'Ġ', newline -> U+010A 'Ċ', printable ASCII unchanged.
  EXPECT_EQ(byte_level::byte_to_char(' '), 0x120u);
  EXPECT_EQ(byte_level::byte_to_char('\n'), 0x10Au);
  EXPECT_EQ(byte_level::byte_to_char('A'), static_cast<char32_t>('A'));
  EXPECT_EQ(byte_level::byte_to_char(0xAD), 0x143u);  // the last remapped byte
  std::set<char32_t> seen;
  for (int b = 0; b < 256; ++b) {
    seen.insert(byte_level::byte_to_char(static_cast<uint8_t>(b)));
    EXPECT_EQ(byte_level::char_to_byte(byte_level::byte_to_char(static_cast<uint8_t>(b))), b);
  }
  EXPECT_EQ(seen.size(), 256u);
  EXPECT_EQ(byte_level::encode("a b\n"), "a\xC4\xA0" "b\xC4\x8A");
  EXPECT_EQ(byte_level::decode_token("\xC4\xA0world"), " world");
  EXPECT_EQ(byte_level::decode_token("<mask with space>"), "<mask with space>");  // not all alphabet: kept
}

}  // namespace
}  // namespace qtrain::data
