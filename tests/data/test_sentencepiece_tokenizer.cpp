// The SentencePiece adapter against spm_encode's ids, and a malformed model refused.
#include <gtest/gtest.h>

#include <string>

#include "common/error.h"
#include "data/sentencepiece_tokenizer.h"
#include "tests/data/tokenizer_fixtures.h"
#include "tests/test_util.h"

namespace qtrain::data {
namespace {

using namespace test;

TEST(SentencePieceTokenizer, MatchesSpmEncodeLineByLine) {
  // spm_encode runs the same library as the adapter: this proves the adapter (loading, ids,
  // BOS/EOS, decode), not SentencePiece's algorithm.
  const auto tokenizer = load_tokenizer(fixture("tokenizer/spm").string());  // a folder with tokenizer.model
  EXPECT_EQ(tokenizer->vocab_size(), 2000);
  EXPECT_EQ(tokenizer->bos_id(), 1);
  EXPECT_EQ(tokenizer->eos_id(), 2);
  std::istringstream text(read_file(fixture("tokenizer/spm/text.txt")));
  std::istringstream ids(read_file(fixture("tokenizer/spm/ids.txt")));
  std::string line, id_line;
  size_t lines = 0;
  while (std::getline(text, line)) {
    ASSERT_TRUE(std::getline(ids, id_line)) << "ids.txt has fewer lines than text.txt";
    std::vector<int32_t> expected;
    std::istringstream fields(id_line);
    for (int32_t id; fields >> id;) expected.push_back(id);
    ASSERT_EQ(tokenizer->encode(line), expected) << "line " << lines + 1 << ": " << line;
    EXPECT_EQ(tokenizer->decode(expected), line) << "line " << lines + 1;
    ++lines;
  }
  EXPECT_EQ(lines, 571u);
  EXPECT_EQ(tokenizer->encode_with_special_tokens("int x;").front(), 1);
}

// A model with an empty piece: libsentencepiece's trie builder throws (the sentencepiece
// fuzz target's finding, fuzz/regressions/sentencepiece), which used to cross the module's
// C interface and end the process; it is a qtrain::Error naming the file.
TEST(SentencePieceTokenizer, AModelThatLibsentencepieceThrowsOnIsAnError) {
  const auto path = testing::source_dir() / "fuzz/regressions/sentencepiece/empty-piece.model";
  try {
    SentencePieceTokenizer::load(path.string());
    FAIL() << "loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("empty-piece.model"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("libsentencepiece"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace qtrain::data
