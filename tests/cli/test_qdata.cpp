// The built qdata end to end: the ids in its token files are Tokenizer::encode of each
// document (plus EOS), in sorted file order, with document offsets and attributes; the files
// do not depend on the thread count; the validation split; JSONL with --text-key; and every
// kind of bad input ends with status 2 and one line naming the file (and line and offset).
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "data/corpus_split.h"
#include "tests/data/test_qdata_util.h"

namespace qtrain::data {
namespace {

using namespace qdata_test;
using testing::run_tool;
namespace fs = std::filesystem;

constexpr int32_t kGpt2Eos = 50256;  // <|endoftext|>

std::string qdata_args(const fs::path& input, const fs::path& output, const std::string& extra = "") {
  return "--tokenizer " + gpt2_path() + " --input '" + input.string() + "' --output '" + output.string() + "' " + extra;
}

TEST(QdataCli, TokenFileHoldsEncodeOfEachDocumentInSortedOrder) {
  const auto dir = testing::scratch_dir();
  const auto& p = paragraphs();
  // Written out of order, nested, one gzipped, one empty (skipped: no document).
  write_text(dir / "corpus/b/2.txt", p[3]);
  write_text(dir / "corpus/a.txt", p[0]);
  write_gz(dir / "corpus/c.rst.gz", p[5] + "\n\n" + p[6]);
  write_text(dir / "corpus/b/1.txt", p[1]);
  write_text(dir / "corpus/d.txt", "");
  const auto run = run_tool(dir, "qdata", qdata_args(dir / "corpus", dir / "out.h5", "--append-eos --threads 2 --json"));
  ASSERT_EQ(run.status, 0) << run.err;

  const auto expected = expected_contents({p[0], p[1], p[3], p[5] + "\n\n" + p[6]}, kGpt2Eos);
  const auto got = read_token_file(dir / "out.h5");
  EXPECT_EQ(got.ids, expected.ids);
  EXPECT_EQ(got.offsets, expected.offsets);
  EXPECT_EQ(got.vocab_size, 50257);
  EXPECT_EQ(got.fingerprint, gpt2().fingerprint());
  EXPECT_EQ(got.stored_type, "uint16");  // GPT-2's 50,257 ids fit 16 bits

  const auto summary = nlohmann::json::parse(run.out);
  EXPECT_EQ(summary["files"], 5);
  EXPECT_EQ(summary["documents"], 4);
  EXPECT_EQ(summary["empty_documents"], 1);
  EXPECT_EQ(summary["tokens"], static_cast<int64_t>(expected.ids.size()));
  EXPECT_EQ(summary["train"]["path"], (dir / "out.h5").string());
  EXPECT_FALSE(summary.contains("val"));
}

// The paragraphs of the fixture corpus, one file each, in a folder.
std::vector<std::string> write_paragraph_corpus(const fs::path& folder, size_t count) {
  std::vector<std::string> docs(paragraphs().begin(), paragraphs().begin() + static_cast<long>(count));
  for (size_t i = 0; i < count; ++i) {
    char name[32];
    std::snprintf(name, sizeof(name), "%04zu.txt", i);
    write_text(folder / name, docs[i]);
  }
  return docs;
}

TEST(QdataCli, SameFilesForOneAndThreeThreads) {
  const auto dir = testing::scratch_dir();
  write_paragraph_corpus(dir / "corpus", 400);
  for (const char* threads : {"1", "3"}) {
    const auto run = run_tool(dir, "qdata",
                              qdata_args(dir / "corpus", dir / ("t" + std::string(threads) + ".h5"),
                                         "--append-eos --val-fraction 0.25 --threads " + std::string(threads)));
    ASSERT_EQ(run.status, 0) << run.err;
  }
  for (const char* split : {"train", "val"}) {
    const auto one = read_token_file(dir / ("t1." + std::string(split) + ".h5"));
    const auto three = read_token_file(dir / ("t3." + std::string(split) + ".h5"));
    EXPECT_EQ(one.ids, three.ids) << split;
    EXPECT_EQ(one.offsets, three.offsets) << split;
  }
}

TEST(QdataCli, ValidationSplitTakesWholeDocumentsNearTheFraction) {
  const auto dir = testing::scratch_dir();
  const auto docs = write_paragraph_corpus(dir / "corpus", 600);
  const auto run = run_tool(dir, "qdata",
                            qdata_args(dir / "corpus", dir / "train.h5",
                                       "--val-output '" + (dir / "val.h5").string() + "' --val-fraction 0.2 --json"));
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_FALSE(fs::exists(dir / "train.train.h5"));
  const auto train = read_token_file(dir / "train.h5"), val = read_token_file(dir / "val.h5");
  const auto summary = nlohmann::json::parse(run.out);
  const int64_t val_docs = static_cast<int64_t>(val.offsets.size()) - 1;
  const int64_t train_docs = static_cast<int64_t>(train.offsets.size()) - 1;
  EXPECT_EQ(summary["val"]["documents"], val_docs);
  EXPECT_EQ(train_docs + val_docs, static_cast<int64_t>(docs.size()));
  // Binomial(600, 0.2): 120 +- 9.8; allow 4 sigma. (Duplicated paragraphs share a split.)
  EXPECT_NEAR(static_cast<double>(val_docs), 120.0, 40.0);

  // Each split is its documents' encode() in corpus order; together they are every document.
  std::vector<std::string> train_text, val_text;
  for (const auto& d : docs) (in_validation_split(d, 0.2) ? val_text : train_text).push_back(d);
  EXPECT_EQ(train.ids, expected_contents(train_text, std::nullopt).ids);
  EXPECT_EQ(val.ids, expected_contents(val_text, std::nullopt).ids);
  EXPECT_EQ(val.offsets, expected_contents(val_text, std::nullopt).offsets);
}

TEST(QdataCli, JsonlWithTextKey) {
  const auto dir = testing::scratch_dir();
  // Escapes (\n, \u00e9, a surrogate pair), other keys, a blank line, CRLF, no final newline.
  const std::string lines =
      "{\"id\": 1, \"body\": \"Hello world.\\nSecond line caf\\u00e9 \\ud83d\\ude00\", \"text\": \"not this\"}\n"
      "\n"
      "{\"body\": \"The kernel \\\"coding style\\\" is short.\", \"meta\": {\"lang\": \"en\"}}\r\n"
      "{\"body\": \"\"}\n"
      "  {\"body\": \"last, with no newline\"}";
  write_text(dir / "a.jsonl", lines);
  write_gz(dir / "b.jsonl.gz", "{\"body\": \"from a gzipped file\"}\n");
  const auto run = run_tool(dir, "qdata",
                            "--tokenizer " + gpt2_path() + " --format jsonl --text-key body --append-eos --json --input '" +
                                (dir / "a.jsonl").string() + "' '" + (dir / "b.jsonl.gz").string() + "' --output '" +
                                (dir / "out.h5").string() + "'");
  ASSERT_EQ(run.status, 0) << run.err;
  const auto expected = expected_contents({"Hello world.\nSecond line caf\xC3\xA9 \xF0\x9F\x98\x80",
                                           "The kernel \"coding style\" is short.", "last, with no newline",
                                           "from a gzipped file"},
                                          kGpt2Eos);
  const auto got = read_token_file(dir / "out.h5");
  EXPECT_EQ(got.ids, expected.ids);
  EXPECT_EQ(got.offsets, expected.offsets);
  EXPECT_EQ(nlohmann::json::parse(run.out)["empty_documents"], 1);
}

struct BadRun {
  int status;
  std::string err;
  bool left_output;
};

BadRun run_bad(const fs::path& dir, const std::string& args) {
  const auto run = run_tool(dir, "qdata", args + " --output '" + (dir / "out.h5").string() + "'");
  return {run.status, run.err, fs::exists(dir / "out.h5")};
}

// One case per kind of failure through the binary (exit status, one line, no output file);
// every message is checked at the library level in tests/data/test_qdata_corpus.cpp.
TEST(QdataCli, BadInputExitsWithStatus2NamingFileAndOffset) {
  const auto dir = testing::scratch_dir();
  const std::string tok = "--tokenizer " + gpt2_path();
  const auto expect_bad = [&](const std::string& args, const std::string& message) {
    const auto r = run_bad(dir, args);
    EXPECT_EQ(r.status, 2) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << "want: " << message << "\ngot:  " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;  // one line
    EXPECT_FALSE(r.left_output) << args;
  };
  const auto f = [&](const std::string& name) { return (dir / name).string(); };

  expect_bad(tok + " --input '" + f("missing.txt") + "'",
             "qdata: error: " + f("missing.txt") + ": key '--input': no such file or folder");

  write_text(dir / "latin1/ok.txt", "fine");
  write_text(dir / "latin1/z.txt", "na\xEFve text in Latin-1");
  expect_bad(tok + " --threads 3 --input '" + f("latin1") + "'",
             "qdata: error: " + f("latin1/z.txt") + ": text is not valid UTF-8: byte 0xEF at byte offset 2");

  write_text(dir / "broken.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"unterminated}\n");
  expect_bad(tok + " --format jsonl --input '" + f("broken.jsonl") + "'",
             "qdata: error: " + f("broken.jsonl") + ":2: key 'text': malformed JSON line: column ");

  write_text(dir / "bad_tokenizer/tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": ");
  expect_bad("--tokenizer '" + f("bad_tokenizer/tokenizer.json") + "' --input '" + f("latin1/ok.txt") + "'",
             "qdata: error: " + f("bad_tokenizer/tokenizer.json") + ": ");
}

}  // namespace
}  // namespace qtrain::data
