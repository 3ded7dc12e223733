// load_tokenizer(): which kind a path loads, BOS/EOS from tokenizer_config.json, fingerprints,
// and errors that name the file and the key.
#include <gtest/gtest.h>

#include "data/tokenizer.h"
#include "tests/data/tokenizer_fixtures.h"

namespace qtrain::data {
namespace {

using namespace test;
using qtrain::testing::scratch_dir;

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
  behavior["pre_tokenizer"] = nlohmann::json::parse(R"({"type": "Sequence", "pretokenizers": [
      {"type": "Split", "pattern": {"Regex": "a"}, "behavior": "Sideways"}, {"type": "ByteLevel"}]})");
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
