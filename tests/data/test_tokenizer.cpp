// Tokenizers against references no one here wrote: ids from Hugging Face's JS tokenizers
// (cross-checked with OpenAI's GPT-2 algorithm in gpt-3-encoder) on ~290 KB of kernel docs,
// spm_encode's ids for SentencePiece, and expected values from huggingface/tokenizers' own
// unit tests and the Unicode Standard. Fixtures: tests/fixtures/tokenizer/README.md.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "common/error.h"
#include "data/added_vocabulary.h"
#include "data/byte_level.h"
#include "data/hf_tokenizer.h"
#include "data/pre_tokenizer.h"
#include "data/tokenizer.h"
#include "data/tokenizer_json.h"
#include "data/utf8.h"
#include "tests/test_util.h"

namespace qtrain::data {
namespace {

using qtrain::testing::fixture;
using qtrain::testing::scratch_dir;

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// Reference ids stored as uint16 little-endian.
std::vector<int32_t> read_u16_ids(const std::filesystem::path& path) {
  const std::string bytes = read_file(path);
  std::vector<int32_t> ids(bytes.size() / 2);
  for (size_t i = 0; i < ids.size(); ++i)
    ids[i] = static_cast<uint8_t>(bytes[2 * i]) | (static_cast<uint8_t>(bytes[2 * i + 1]) << 8);
  return ids;
}

const nlohmann::json& gpt2_json() {
  static const nlohmann::json json = read_json_file(fixture("tokenizer/gpt2/tokenizer.json").string());
  return json;
}
const nlohmann::json& cases_json() {
  static const nlohmann::json json = read_json_file(fixture("tokenizer/cases.json").string());
  return json;
}
const std::string& corpus() {
  static const std::string text = read_file(fixture("tokenizer/corpus.txt"));
  return text;
}

std::unique_ptr<HfTokenizer> hf_from(const nlohmann::json& json, const std::string& name = "test.json") {
  return std::make_unique<HfTokenizer>(parse_tokenizer_json(json, name), name);
}

// Index of the first difference, for a readable failure.
void expect_same_ids(const std::vector<int32_t>& expected, const std::vector<int32_t>& actual) {
  ASSERT_EQ(expected.size(), actual.size());
  for (size_t i = 0; i < expected.size(); ++i) ASSERT_EQ(expected[i], actual[i]) << "first difference at id " << i;
}

// Runs f and returns the qtrain::Error it throws (failing the test if it throws none).
template <class F>
Error error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "no qtrain::Error thrown";
  return Error("none");
}

// ---- building blocks ----

TEST(Utf8, LossyDecodingReplacesMaximalSubparts) {
  // The example of the Unicode Standard, section 3.9 (U+FFFD substitution of maximal subparts).
  EXPECT_EQ(utf8::to_valid_lossy("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64"),
            "a\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" "b\xEF\xBF\xBD" "c\xEF\xBF\xBD\xEF\xBF\xBD" "d");
  // Rust's String::from_utf8_lossy documentation example.
  EXPECT_EQ(utf8::to_valid_lossy("Hello \xF0\x90\x80World"), "Hello \xEF\xBF\xBDWorld");
  EXPECT_EQ(utf8::to_valid_lossy("ok \xC3\xA9 \xF0\x9F\x91\x8D"), "ok \xC3\xA9 \xF0\x9F\x91\x8D");
}

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

// ---- parity on real text ----

TEST(HfTokenizer, Gpt2MatchesReferenceIdsOnKernelDocs) {
  const auto tokenizer = load_tokenizer(fixture("tokenizer/gpt2/tokenizer.json").string());
  const std::vector<int32_t> ids = tokenizer->encode(corpus());
  expect_same_ids(read_u16_ids(fixture("tokenizer/gpt2_ids.u16")), ids);
  EXPECT_EQ(tokenizer->decode(ids), corpus());
  EXPECT_EQ(tokenizer->vocab_size(), 50257);
  EXPECT_EQ(tokenizer->eos_id(), 50256);
  EXPECT_FALSE(tokenizer->bos_id().has_value());
  EXPECT_EQ(tokenizer->encode_with_special_tokens("Hello"), tokenizer->encode("Hello"));  // ByteLevel adds none
}

TEST(HfTokenizer, Llama3StyleMatchesReferenceIds) {
  // Llama 3's Split regex, ByteLevel without regex, ignore_merges and a BOS template over
  // GPT-2's vocabulary: the overlay make_fixtures.mjs applied, as an RFC 7386 merge patch.
  nlohmann::json json = gpt2_json();
  json.merge_patch(cases_json()["llama3_style_overlay"]);
  const auto tokenizer = hf_from(json);
  const std::vector<int32_t> ids = tokenizer->encode_with_special_tokens(corpus());
  expect_same_ids(read_u16_ids(fixture("tokenizer/llama3_style_ids.u16")), ids);
  EXPECT_EQ(tokenizer->decode(ids), "<|begin_of_text|>" + corpus());
  EXPECT_EQ(tokenizer->bos_id(), 50257);
  EXPECT_EQ(tokenizer->special_prefix(), std::vector<int32_t>{50257});
}

TEST(HfTokenizer, OptionCasesMatchReferenceIds) {
  for (const auto& c : cases_json()["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    nlohmann::json json = c.contains("tokenizer") ? c["tokenizer"] : gpt2_json();
    if (c.contains("overlay")) json.merge_patch(c["overlay"]);
    const auto tokenizer = hf_from(json);
    for (size_t i = 0; i < c["texts"].size(); ++i) {
      const std::string text = c["texts"][i].get<std::string>();
      EXPECT_EQ(tokenizer->encode(text), c["ids"][i].get<std::vector<int32_t>>()) << "text: " << text;
    }
  }
}

TEST(HfTokenizer, EncodesConcurrentlyLikeOneThread) {
  const auto tokenizer = hf_from(gpt2_json());
  const std::string& text = corpus();
  std::vector<std::string> chunks;
  for (size_t begin = 0; begin < text.size(); begin += 8192) chunks.push_back(text.substr(begin, 8192));
  std::vector<std::vector<int32_t>> expected;
  const auto one_thread = hf_from(gpt2_json());
  for (const auto& c : chunks) expected.push_back(one_thread->encode(c));
  std::vector<std::vector<int32_t>> actual(chunks.size());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (size_t i = static_cast<size_t>(t); i < chunks.size(); i += 4) actual[i] = tokenizer->encode(chunks[i]);
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(actual, expected);
}

TEST(HfTokenizer, DecodeReplacesCutSequencesAndRejectsUnknownIds) {
  const auto tokenizer = hf_from(gpt2_json());
  const std::vector<int32_t> ids = tokenizer->encode("\xF0\x9F\x91\x8D");  // one emoji, several byte tokens
  ASSERT_GT(ids.size(), 1u);
  EXPECT_EQ(tokenizer->decode({ids[0]}), "\xEF\xBF\xBD");
  const Error e = error_of([&] { tokenizer->decode({50257}); });
  EXPECT_NE(std::string(e.what()).find("50257"), std::string::npos);
}

// ---- SentencePiece ----

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

// ---- loading ----

TEST(LoadTokenizer, FolderPrefersByteLevelJsonAndReadsTokenizerConfig) {
  const auto dir = scratch_dir();
  std::filesystem::copy_file(fixture("tokenizer/gpt2/tokenizer.json"), dir / "tokenizer.json");
  std::filesystem::copy_file(fixture("tokenizer/spm/tokenizer.model"), dir / "tokenizer.model");
  write_file(dir / "tokenizer_config.json",
             R"({"bos_token": {"content": "<|endoftext|>"}, "eos_token": "<|endoftext|>"})");
  const auto tokenizer = load_tokenizer(dir.string());
  EXPECT_EQ(tokenizer->vocab_size(), 50257);
  EXPECT_EQ(tokenizer->bos_id(), 50256);
  EXPECT_EQ(tokenizer->eos_id(), 50256);
  write_file(dir / "tokenizer_config.json", R"({"eos_token": "<unknown>"})");
  const Error e = error_of([&] { load_tokenizer(dir.string()); });
  EXPECT_EQ(e.key_name(), "eos_token");
  EXPECT_NE(e.file_name().find("tokenizer_config.json"), std::string::npos);
}

TEST(LoadTokenizer, FolderFallsBackToSentencePieceForMetaspaceJson) {
  const auto dir = scratch_dir();
  nlohmann::json json = gpt2_json();
  json["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "first"}};
  write_file(dir / "tokenizer.json", json.dump());
  std::filesystem::copy_file(fixture("tokenizer/spm/tokenizer.model"), dir / "tokenizer.model");
  EXPECT_EQ(load_tokenizer(dir.string())->vocab_size(), 2000);
  std::filesystem::remove(dir / "tokenizer.model");
  const Error e = error_of([&] { load_tokenizer(dir.string()); });
  EXPECT_EQ(e.key_name(), "pre_tokenizer.type");
}

TEST(Fingerprint, IgnoresFormattingAndSeesEveryChange) {
  const std::string base = hf_from(gpt2_json())->fingerprint();
  // Pinned so that a change to the definition (docs/tokenizer.md) is noticed: token files
  // carry this value.
  EXPECT_EQ(base, "xxh3-128:9702bd48d4e77776dd21b35f6baaac7f");
  const auto dir = scratch_dir();
  write_file(dir / "tokenizer.json", gpt2_json().dump(2));  // other layout and key order
  EXPECT_EQ(load_tokenizer((dir / "tokenizer.json").string())->fingerprint(), base);
  nlohmann::json swapped = gpt2_json();
  std::swap(swapped["model"]["merges"][10], swapped["model"]["merges"][11]);
  EXPECT_NE(hf_from(swapped)->fingerprint(), base);
  nlohmann::json renamed = gpt2_json();
  renamed["added_tokens"][0]["lstrip"] = true;
  EXPECT_NE(hf_from(renamed)->fingerprint(), base);
  EXPECT_NE(load_tokenizer(fixture("tokenizer/spm/tokenizer.model").string())->fingerprint(), base);
}

// ---- errors name the file and the key ----

TEST(LoadTokenizer, MissingFileNamesIt) {
  const Error e = error_of([] { load_tokenizer("/nonexistent/tokenizer.json"); });
  EXPECT_EQ(e.file_name(), "/nonexistent/tokenizer.json");
  const auto dir = scratch_dir();
  EXPECT_EQ(error_of([&] { load_tokenizer(dir.string()); }).file_name(), dir.string());
}

TEST(LoadTokenizer, MalformedFilesNameFileAndKey) {
  const auto dir = scratch_dir();
  const std::string path = (dir / "tokenizer.json").string();
  write_file(path, "{\"model\": {\"type\": \"BPE\", ");
  Error e = error_of([&] { load_tokenizer(path); });
  EXPECT_EQ(e.file_name(), path);
  EXPECT_NE(std::string(e.what()).find("malformed JSON"), std::string::npos);

  auto expect_key = [&](const nlohmann::json& json, const std::string& key) {
    write_file(path, json.dump());
    const Error err = error_of([&] { load_tokenizer(path); });
    EXPECT_EQ(err.file_name(), path) << err.what();
    EXPECT_EQ(err.key_name(), key) << err.what();
  };
  nlohmann::json wordpiece = gpt2_json();
  wordpiece["model"]["type"] = "WordPiece";
  expect_key(wordpiece, "model.type");
  nlohmann::json no_merges = gpt2_json();
  no_merges["model"].erase("merges");
  expect_key(no_merges, "model.merges");
  nlohmann::json bad_merge = gpt2_json();
  bad_merge["model"]["merges"][0] = "\xC4\xA0 qqqqqqqqqqqqqqqq";
  expect_key(bad_merge, "model.merges[0]");
  nlohmann::json no_vocab = gpt2_json();
  no_vocab["model"].erase("vocab");
  expect_key(no_vocab, "model.vocab");
  nlohmann::json fallback = gpt2_json();
  fallback["model"]["byte_fallback"] = true;
  expect_key(fallback, "model.byte_fallback");
  nlohmann::json behavior = gpt2_json();
  behavior["pre_tokenizer"] = {{"type", "Sequence"},
                               {"pretokenizers", {{{"type", "Split"}, {"pattern", {{"Regex", "a"}}}, {"behavior", "Sideways"}},
                                                  {{"type", "ByteLevel"}}}}};
  expect_key(behavior, "pre_tokenizer.pretokenizers[0].behavior");
  nlohmann::json lowercase = gpt2_json();
  lowercase["normalizer"] = {{"type", "Lowercase"}};
  expect_key(lowercase, "normalizer.type");

  const std::string model = (dir / "broken.model").string();
  write_file(model, "not a protobuf");
  EXPECT_EQ(error_of([&] { load_tokenizer(model); }).file_name(), model);
}

}  // namespace
}  // namespace qtrain::data
