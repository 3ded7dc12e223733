// Split behaviours against the expected pieces of huggingface/tokenizers' own unit test.
#include <gtest/gtest.h>

#include "data/pre_tokenizer.h"

namespace qtrain::data {
namespace {

TEST(PreTokenizer, SplitBehaviorsMatchTokenizersTests) {
  // Expected pieces from tokenizers/src/tokenizer/normalizer.rs, test `split`.
  const std::string text = "The-final--countdown";
  const Regex dash("-", Regex::Syntax::literal);
  auto pieces = [&](SplitBehavior behavior) {
    std::vector<Span> spans;
    split_with_behavior(dash, behavior, false, text, &spans);
    std::vector<std::string> out;
    for (const Span& s : spans) out.push_back(text.substr(s.begin, s.end - s.begin));
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(pieces(SplitBehavior::removed), (V{"The", "final", "countdown"}));
  EXPECT_EQ(pieces(SplitBehavior::isolated), (V{"The", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(pieces(SplitBehavior::merged_with_previous), (V{"The-", "final-", "-", "countdown"}));
  EXPECT_EQ(pieces(SplitBehavior::merged_with_next), (V{"The", "-final", "-", "-countdown"}));
  EXPECT_EQ(pieces(SplitBehavior::contiguous), (V{"The", "-", "final", "--", "countdown"}));
}

}  // namespace
}  // namespace qtrain::data
