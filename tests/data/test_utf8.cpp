// utf8::to_valid_lossy against the Unicode Standard's example and Rust's documented one.
#include <gtest/gtest.h>

#include "data/utf8.h"

namespace qtrain::data {
namespace {

TEST(Utf8, LossyDecodingReplacesMaximalSubparts) {
  // The example of the Unicode Standard, section 3.9 (U+FFFD substitution of maximal subparts).
  EXPECT_EQ(utf8::to_valid_lossy("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64"),
            "a\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" "b\xEF\xBF\xBD" "c\xEF\xBF\xBD\xEF\xBF\xBD" "d");
  // Rust's String::from_utf8_lossy documentation example.
  EXPECT_EQ(utf8::to_valid_lossy("Hello \xF0\x90\x80World"), "Hello \xEF\xBF\xBDWorld");
  EXPECT_EQ(utf8::to_valid_lossy("ok \xC3\xA9 \xF0\x9F\x91\x8D"), "ok \xC3\xA9 \xF0\x9F\x91\x8D");
}

}  // namespace
}  // namespace qtrain::data
