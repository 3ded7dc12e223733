// The pieces of qdata below the CLI: file listing order, the gzip-transparent reader, the
// UTF-8 check, the ordered thread pool (same documents in the same order for any thread
// count and batch size, the first bad document reported whatever the threads), the split
// rule, and the fingerprint check a consumer runs on a token file.
#include <gtest/gtest.h>

#include <random>

#include "common/error.h"
#include "data/corpus_builder.h"
#include "data/corpus_input.h"
#include "data/corpus_pipeline.h"
#include "data/corpus_split.h"
#include "data/tokenizer_match.h"
#include "tests/data/test_qdata_util.h"

namespace qtrain::data {
namespace {

using namespace qdata_test;

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

TEST(QdataCorpus, FindsTheFirstIllFormedUtf8Byte) {
  EXPECT_EQ(find_invalid_utf8(""), std::string_view::npos);
  EXPECT_EQ(find_invalid_utf8("plain ASCII text, longer than eight bytes"), std::string_view::npos);
  EXPECT_EQ(find_invalid_utf8("caf\xC3\xA9 \xE4\xB8\xAD \xF0\x9F\x98\x80"), std::string_view::npos);
  EXPECT_EQ(find_invalid_utf8("0123456789\xFF"), 10u);           // after the 8-byte ASCII fast path
  EXPECT_EQ(find_invalid_utf8("ab\xC0\x80"), 2u);                // overlong encoding of U+0000
  EXPECT_EQ(find_invalid_utf8("abc\xED\xA0\x80xyz"), 3u);        // a UTF-16 surrogate
  EXPECT_EQ(find_invalid_utf8("abcdefgh\xE4\xB8"), 8u);          // cut at the end
  EXPECT_EQ(find_invalid_utf8("\xF4\x90\x80\x80"), 0u);          // above U+10FFFF
  EXPECT_EQ(find_invalid_utf8("x\x80"), 1u);                     // a lone continuation byte
}

TEST(QdataCorpus, ListsFoldersRecursivelyInSortedOrder) {
  const auto dir = testing::scratch_dir();
  for (const char* name : {"b/z.txt", "b/a/y.txt", "a.txt", "c.gz", "b/a.txt"}) write_text(dir / "corpus" / name, name);
  write_text(dir / "single.txt", "x");
  const auto files = list_corpus_files({(dir / "single.txt").string(), (dir / "corpus").string()});
  std::vector<std::string> names;
  for (const auto& f : files) names.push_back(std::filesystem::relative(f.path, dir).string());
  EXPECT_EQ(names, (std::vector<std::string>{"single.txt", "corpus/a.txt", "corpus/b/a.txt", "corpus/b/a/y.txt",
                                             "corpus/b/z.txt", "corpus/c.gz"}));
  EXPECT_EQ(files[1].disk_bytes, 5);
  EXPECT_EQ(error_of([&] { list_corpus_files({(dir / "nope").string()}); }),
            (dir / "nope").string() + ": key '--input': no such file or folder");
}

TEST(QdataCorpus, ReadsGzipAndPlainFilesAlike) {
  const auto dir = testing::scratch_dir();
  const std::string text = "first line\nsecond \xC3\xA9\n\nlast line without newline";
  write_text(dir / "plain.txt", text);
  write_gz(dir / "packed.txt.gz", text);
  for (const char* name : {"plain.txt", "packed.txt.gz"}) {
    CorpusInput whole((dir / name).string());
    EXPECT_EQ(whole.read_all(), text) << name;
    CorpusInput lines((dir / name).string());
    std::vector<std::string> got;
    std::string line;
    while (lines.read_line(line)) got.push_back(line);
    EXPECT_EQ(got, (std::vector<std::string>{"first line", "second \xC3\xA9", "", "last line without newline"}));
  }
  const char broken_bytes[] = "\x1f\x8b\x08\x00garbage that is not deflate";  // gzip magic, then junk
  write_text(dir / "broken.gz", std::string(broken_bytes, sizeof(broken_bytes) - 1));
  CorpusInput broken((dir / "broken.gz").string());
  EXPECT_EQ(error_of([&] { broken.read_all(); }),
            (dir / "broken.gz").string() + ": cannot read corpus file: invalid code lengths set "
            "(expected: a readable plain or gzip file)");
  // A gzip file cut short (an interrupted download) must not pass as a shorter document.
  std::string long_text;
  for (int i = 0; i < 2000; ++i) long_text += "line " + std::to_string(i * 7919 % 10007) + "\n";
  write_gz(dir / "cut.gz", long_text);
  std::filesystem::resize_file(dir / "cut.gz", std::filesystem::file_size(dir / "cut.gz") / 2);
  CorpusInput cut((dir / "cut.gz").string());
  EXPECT_EQ(error_of([&] { cut.read_all(); }),
            (dir / "cut.gz").string() + ": gzip data is truncated (the file ends inside a compressed stream) "
            "(expected: a complete gzip file)");
}

// Writes each paragraph of the fixture corpus as its own file (every fifth gzipped).
std::vector<CorpusFile> write_paragraph_files(const std::filesystem::path& dir, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    char name[32];
    std::snprintf(name, sizeof(name), "p%04zu.txt%s", i, i % 5 == 4 ? ".gz" : "");
    if (i % 5 == 4) write_gz(dir / name, paragraphs()[i]);
    else write_text(dir / name, paragraphs()[i]);
  }
  return list_corpus_files({dir.string()});
}

std::vector<std::vector<int32_t>> run_pipeline(const std::vector<CorpusFile>& files, int threads, size_t batch_bytes,
                                               int64_t* last_disk_done = nullptr) {
  CorpusPipelineOptions options;
  options.threads = threads;
  options.batch_bytes = batch_bytes;
  std::vector<std::vector<int32_t>> out;
  tokenize_corpus(files, gpt2(), options, [&](TokenizedDocument& d, int64_t disk_done) {
    out.push_back(std::move(d.ids));
    if (last_disk_done) *last_disk_done = disk_done;
  });
  return out;
}

TEST(QdataCorpus, PipelineKeepsCorpusOrderForAnyThreadCount) {
  const auto dir = testing::scratch_dir();
  const size_t count = 300;
  const auto files = write_paragraph_files(dir, count);
  std::vector<std::vector<int32_t>> expected;
  for (size_t i = 0; i < count; ++i) expected.push_back(gpt2().encode(paragraphs()[i]));
  int64_t disk_done = 0, disk_total = 0;
  for (const auto& f : files) disk_total += f.disk_bytes;
  EXPECT_EQ(run_pipeline(files, 1, 1 << 18, &disk_done), expected);
  EXPECT_EQ(disk_done, disk_total);
  // Batches of a few documents and more threads than batches in the window: heavy reordering.
  EXPECT_EQ(run_pipeline(files, 4, 700), expected);
  EXPECT_EQ(run_pipeline(files, 3, 1), expected);
}

TEST(QdataCorpus, PipelineReportsTheFirstBadDocumentWhateverTheThreads) {
  const auto dir = testing::scratch_dir();
  for (int i = 0; i < 40; ++i) write_text(dir / ("d" + std::to_string(10 + i) + ".txt"), paragraphs()[i]);
  write_text(dir / "d30.txt", "good start \xFF bad");  // the first bad one in corpus order
  write_text(dir / "d45.txt", "\xC0 also bad");
  const auto files = list_corpus_files({dir.string()});
  const std::string expected = (dir / "d30.txt").string() +
                               ": text is not valid UTF-8: byte 0xFF at byte offset 11 (expected: UTF-8 text "
                               "(offsets count decompressed bytes for .gz files))";
  for (int threads : {1, 2, 5})
    for (size_t batch : {size_t{1}, size_t{5000}}) EXPECT_EQ(error_of([&] { run_pipeline(files, threads, batch); }), expected);
}

TEST(QdataCorpus, SplitIsByTextHashAndNearTheFraction) {
  EXPECT_FALSE(in_validation_split("anything", 0.0));
  EXPECT_TRUE(in_validation_split("anything", 1.0));
  int in_val = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const std::string text = "document number " + std::to_string(i);
    const bool val = in_validation_split(text, 0.1);
    EXPECT_EQ(val, in_validation_split(std::string(text), 0.1));  // a function of the text alone
    if (val) EXPECT_TRUE(in_validation_split(text, 0.2));         // a larger fraction only adds documents
    in_val += val;
  }
  // Binomial(20000, 0.1): standard deviation 42; 5 sigma either side.
  EXPECT_NEAR(in_val, n / 10, 212);
}

TEST(QdataCorpus, FingerprintCheckNamesTheFileAndBothFingerprints) {
  const auto dir = testing::scratch_dir();
  const auto path = (dir / "tokens.h5").string();
  {
    TokenFileWriter writer(path, {gpt2().vocab_size(), gpt2().fingerprint(), TokenType::uint16});
    writer.append_document(gpt2().encode("hello world"));
    writer.commit();
  }
  const auto file = TokenFile::open(path);
  EXPECT_TRUE(check_tokenizer_fingerprint(file, gpt2()));

  // The same vocabulary with another pre-tokenizer option gives other ids, so another fingerprint.
  auto json = nlohmann::json::parse(testing::read_text(gpt2_path()));
  json["pre_tokenizer"]["add_prefix_space"] = true;
  write_text(dir / "other" / "tokenizer.json", json.dump());
  const auto other = load_tokenizer((dir / "other" / "tokenizer.json").string());
  ASSERT_NE(other->fingerprint(), gpt2().fingerprint());
  EXPECT_EQ(error_of([&] { check_tokenizer_fingerprint(file, *other); }),
            path + ": key 'tokenizer_fingerprint': token file was made with another tokenizer: its "
            "tokenizer_fingerprint is " + gpt2().fingerprint() + ", " + other->source() + " has " +
            other->fingerprint() + " (expected: token files made by qdata with the model's tokenizer)");

  // A file written by another tool, without the attribute, cannot be checked.
  EXPECT_FALSE(check_tokenizer_fingerprint(TokenFile::open(testing::fixture("tokens.h5").string()), gpt2()));
}

TEST(QdataCorpus, BuilderWritesInt32ForVocabulariesAbove65536) {
  const auto dir = testing::scratch_dir();
  auto json = nlohmann::json::parse(testing::read_text(gpt2_path()));
  json["added_tokens"].push_back({{"id", 70000}, {"content", "<|big|>"}, {"single_word", false}, {"lstrip", false},
                                  {"rstrip", false}, {"normalized", false}, {"special", true}});
  write_text(dir / "big" / "tokenizer.json", json.dump());
  const auto big = load_tokenizer((dir / "big" / "tokenizer.json").string());
  ASSERT_EQ(big->vocab_size(), 70001);
  write_text(dir / "corpus" / "a.txt", "one <|big|> two");
  CorpusBuildOptions options;
  options.inputs = {(dir / "corpus").string()};
  options.output = (dir / "out.h5").string();
  options.show_progress = false;
  const auto result = build_token_files(*big, options);
  const auto got = read_token_file(dir / "out.h5");
  EXPECT_EQ(got.stored_type, "int32");
  EXPECT_EQ(got.vocab_size, 70001);
  const auto ids = big->encode("one <|big|> two");
  EXPECT_EQ(got.ids, std::vector<int64_t>(ids.begin(), ids.end()));
  EXPECT_EQ(result.tokens, static_cast<int64_t>(ids.size()));
}

// Every kind of bad input, with the whole message: the file, the line and the byte offset.
TEST(QdataCorpus, BuilderRejectsBadInputNamingFileLineAndOffset) {
  const auto dir = testing::scratch_dir();
  const auto f = [&](const std::string& name) { return (dir / name).string(); };
  const auto build = [&](std::vector<std::string> inputs, CorpusFormat format = CorpusFormat::text,
                         const Tokenizer& tokenizer = gpt2(), double val_fraction = 0, bool append_eos = false) {
    CorpusBuildOptions options;
    options.inputs = std::move(inputs);
    options.format = format;
    options.output = f("out.h5");
    options.val_output = f("val.h5");
    options.val_fraction = val_fraction;
    options.append_eos = append_eos;
    options.threads = 2;
    options.show_progress = false;
    build_token_files(tokenizer, options);
  };
  const std::string utf8_expected = " (expected: UTF-8 text (offsets count decompressed bytes for .gz files))";

  EXPECT_EQ(error_of([&] { build({f("missing.txt")}); }), f("missing.txt") + ": key '--input': no such file or folder");

  write_text(dir / "empty/a.txt", "");
  write_text(dir / "empty/b/c.txt", "");
  EXPECT_EQ(error_of([&] { build({f("empty")}); }),
            "key '--input': the corpus holds no documents (2 files, 2 empty documents) "
            "(expected: at least one non-empty document)");
  std::filesystem::create_directories(dir / "nothing");
  EXPECT_EQ(error_of([&] { build({f("nothing")}); }),
            "key '--input': the corpus holds no documents (0 files, 0 empty documents) "
            "(expected: at least one non-empty document)");

  write_text(dir / "latin1/ok.txt", "fine");
  write_text(dir / "latin1/z.txt", "na\xEFve text in Latin-1");
  EXPECT_EQ(error_of([&] { build({f("latin1")}); }),
            f("latin1/z.txt") + ": text is not valid UTF-8: byte 0xEF at byte offset 2" + utf8_expected);

  write_gz(dir / "doc.rst.gz", std::string(5000, 'a') + "\xFF");
  EXPECT_EQ(error_of([&] { build({f("doc.rst.gz")}); }),
            f("doc.rst.gz") + ": text is not valid UTF-8: byte 0xFF at byte offset 5000" + utf8_expected);

  write_text(dir / "utf8.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"fine\"}\n{\"text\": \"bad \xC3\x28\"}\n");
  EXPECT_EQ(error_of([&] { build({f("utf8.jsonl")}, CorpusFormat::jsonl); }),
            f("utf8.jsonl") + ":3: text is not valid UTF-8: byte 0xC3 at byte offset 46 (column 15 of the line)" +
                utf8_expected);

  write_text(dir / "broken.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"unterminated}\n");
  EXPECT_EQ(error_of([&] { build({f("broken.jsonl")}, CorpusFormat::jsonl); }),
            f("broken.jsonl") + ":2: key 'text': malformed JSON line: column 24: syntax error while parsing value - "
            "invalid string: missing closing quote; last read: '\"unterminated}' (expected: one JSON object per line)");

  write_text(dir / "nokey.jsonl", "{\"text\": \"ok\"}\n\n{\"body\": \"x\"}\n");
  EXPECT_EQ(error_of([&] { build({f("nokey.jsonl")}, CorpusFormat::jsonl); }),
            f("nokey.jsonl") + ":3: key 'text': object has no text key (expected: the key given by --text-key)");

  write_text(dir / "array.jsonl", "[\"text\"]\n");
  EXPECT_EQ(error_of([&] { build({f("array.jsonl")}, CorpusFormat::jsonl); }),
            f("array.jsonl") + ":1: key 'text': line is JSON but not an object (expected: one JSON object per line)");

  write_text(dir / "number.jsonl", "{\"text\": 12}\n");
  EXPECT_EQ(error_of([&] { build({f("number.jsonl")}, CorpusFormat::jsonl); }),
            f("number.jsonl") + ":1: key 'text': text value is a number (expected: a string)");

  auto no_eos = nlohmann::json::parse(testing::read_text(gpt2_path()));
  no_eos["added_tokens"] = nlohmann::json::array();
  write_text(dir / "no_eos/tokenizer.json", no_eos.dump());
  const auto no_eos_tokenizer = load_tokenizer(f("no_eos/tokenizer.json"));
  EXPECT_NE(error_of([&] { build({f("latin1/ok.txt")}, CorpusFormat::text, *no_eos_tokenizer, 0, true); })
                .find(f("no_eos/tokenizer.json") + ": key '--append-eos': the tokenizer has no EOS token to append"),
            std::string::npos);

  EXPECT_EQ(error_of([&] { build({f("latin1/ok.txt")}, CorpusFormat::text, gpt2(), 0.5); }),
            "key '--val-fraction': --val-fraction 0.500000 leaves the training split of 1 documents empty "
            "(expected: a fraction that puts documents in both splits)");
  EXPECT_EQ(error_of([&] { parse_corpus_format("csv"); }),
            "key '--format': unknown corpus format 'csv' (expected: text|jsonl)");
  EXPECT_FALSE(std::filesystem::exists(dir / "out.h5"));  // no failed run left a file
  EXPECT_FALSE(std::filesystem::exists(dir / "val.h5"));
}

}  // namespace
}  // namespace qtrain::data
