// Added-token extraction against the expected segments of huggingface/tokenizers'
// added_vocabulary.rs tests.
#include <gtest/gtest.h>

#include "data/added_vocabulary.h"

namespace qtrain::data {
namespace {

// Splits `text` in both passes, as extract_and_normalize does without a normalizer, and
// returns (text, id) per segment.
std::vector<std::pair<std::string, int32_t>> extract(const AddedVocabulary& vocab, const std::string& text) {
  std::vector<std::pair<std::string, int32_t>> out;
  std::vector<AddedVocabulary::Segment> raw, normalized;
  vocab.split(text, AddedVocabulary::Pass::raw, &raw);
  for (const auto& r : raw) {
    const std::string piece = text.substr(r.begin, r.end - r.begin);
    if (r.id >= 0) {
      out.emplace_back(piece, r.id);
      continue;
    }
    normalized.clear();
    vocab.split(piece, AddedVocabulary::Pass::normalized, &normalized);
    for (const auto& n : normalized) out.emplace_back(piece.substr(n.begin, n.end - n.begin), n.id);
  }
  return out;
}

AddedToken added(int32_t id, const std::string& content, bool special) {
  AddedToken t;
  t.id = id;
  t.content = content;
  t.special = special;
  t.normalized = !special;  // AddedToken::from(content, special)
  return t;
}

std::string identity(std::string_view s) { return std::string(s); }

// Expected segments from tokenizers/src/tokenizer/added_vocabulary.rs tests (their inputs are
// lower-cased by a Lowercase normalizer there; here they are written lower-case).
TEST(AddedVocabulary, OptionsMatchTokenizersTests) {
  AddedToken my = added(0, "my", false), ony = added(2, "ony", false);
  my.lstrip = my.rstrip = true;
  ony.single_word = true;
  AddedVocabulary vocab({my, added(1, "name", false), ony, added(3, "[CLS]", true), added(4, "[SEP]", true)}, identity);
  using V = std::vector<std::pair<std::string, int32_t>>;
  EXPECT_EQ(extract(vocab, "[CLS] my name is anthony [SEP]"),
            (V{{"[CLS]", 3}, {" my ", 0}, {"name", 1}, {" is anthony ", -1}, {"[SEP]", 4}}));
}

TEST(AddedVocabulary, SingleWordMatchesTokenizersTests) {
  AddedToken mask = added(0, "<mask>", false);
  mask.single_word = true;
  AddedVocabulary vocab({mask}, identity);
  using V = std::vector<std::pair<std::string, int32_t>>;
  EXPECT_EQ(extract(vocab, "<mask> my name <mask> a<mask> <mask>ony <mask>"),
            (V{{"<mask>", 0}, {" my name ", -1}, {"<mask>", 0}, {" a<mask> <mask>ony ", -1}, {"<mask>", 0}}));
  // A combining mark is a word character; punctuation is not.
  EXPECT_EQ(extract(vocab, "<mask>, <mask>- \xE2\x97\x8C\xCC\xB0<mask>"),
            (V{{"<mask>", 0}, {", ", -1}, {"<mask>", 0}, {"- \xE2\x97\x8C\xCC\xB0<mask>", -1}}));
}

TEST(AddedVocabulary, StripsUnicodeSpacesLikeTokenizersTests) {
  AddedToken mask = added(0, "<mask>", false);
  mask.lstrip = mask.rstrip = mask.single_word = true;
  AddedVocabulary vocab({mask}, identity);
  using V = std::vector<std::pair<std::string, int32_t>>;
  EXPECT_EQ(extract(vocab, "hi <mask> there\t<mask>\t<mask>\xE2\x80\x80"),
            (V{{"hi", -1}, {" <mask> ", 0}, {"there", -1}, {"\t<mask>\t", 0}, {"<mask>\xE2\x80\x80", 0}}));
}

}  // namespace
}  // namespace qtrain::data
