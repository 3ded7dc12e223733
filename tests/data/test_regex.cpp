// Oniguruma patterns under PCRE2 keep their Unicode meaning; unsupported syntax is refused.
#include <gtest/gtest.h>

#include "common/error.h"
#include "data/regex.h"

namespace qtrain::data {
namespace {

TEST(Regex, OnigurumaShorthandsKeepTheirUnicodeMeaning) {
  std::vector<Span> m;
  // \s is White_Space: U+0085 (NEL) is in it, U+FEFF and U+200B are not.
  Regex space(R"(\s+)", Regex::Syntax::oniguruma);
  space.find_all("a\xC2\x85" "b\xEF\xBB\xBF" "c\xE2\x80\x8B" "d", &m);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].begin, 1u);
  EXPECT_EQ(m[0].end, 3u);
  EXPECT_THROW(Regex("[a[b]]", Regex::Syntax::oniguruma), Error);
  EXPECT_THROW(Regex("[a-z&&[^aeiou]]", Regex::Syntax::oniguruma), Error);
  // Ill-formed UTF-8 never matches but does not stop the search.
  m.clear();
  Regex letters(R"(\p{L}+)", Regex::Syntax::oniguruma);
  letters.find_all("ab\xFF" "cd", &m);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[1].begin, 3u);
}

}  // namespace
}  // namespace qtrain::data
