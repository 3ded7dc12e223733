// The built qdata end to end: the ids in its token files are Tokenizer::encode of each
// document (plus EOS), in sorted file order, with document offsets and attributes; the files
// do not depend on the thread count; the validation split; JSONL with --text-key; every
// kind of bad input ends with status 2 and one line naming the file (and line and offset);
// an output among the inputs and threads the system refuses end the same way.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>
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

// Every regular file below `folder` with its size and a hash of its bytes: what a refused run
// must leave as it was (a hash, so that a failure prints a line per file, not the files).
std::map<std::string, std::string> snapshot(const fs::path& folder) {
  std::map<std::string, std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(folder)) {
    if (!entry.is_regular_file()) continue;
    const std::string bytes = testing::read_text(entry.path());
    files[entry.path().string()] =
        std::to_string(bytes.size()) + " bytes, hash " + std::to_string(std::hash<std::string>{}(bytes));
  }
  return files;
}

std::string quoted(const fs::path& path) { return "'" + path.string() + "'"; }

std::string input_output(const fs::path& input, const fs::path& output) {
  return "--input " + quoted(input) + " --output " + quoted(output);
}

// An output that is an input file, or lies inside an input folder, is refused before anything
// is written: as given, through "..", from a relative path, through symbolic links, and for
// the validation output too. The inputs keep their bytes and no file appears among them.
TEST(QdataCli, OutputThatIsAnInputIsRefusedBeforeAnythingIsWritten) {
  const auto dir = testing::scratch_dir();
  const fs::path in = dir / "in", a = in / "corpus/a.txt.gz";
  write_gz(a, paragraphs()[0]);
  write_text(in / "corpus/sub/b.txt", paragraphs()[1]);
  write_text(in / "outside/c.txt", paragraphs()[2]);
  fs::create_directory_symlink("corpus", in / "link");  // in/link -> in/corpus
  fs::create_directories(in / "linked");
  fs::create_symlink("../outside/c.txt", in / "linked/c.txt");  // a folder's file that lives elsewhere
  const auto before = snapshot(in);
  const auto expect_refused = [&](const std::string& args, const std::string& message) {
    const auto run = run_tool(dir, "qdata", "--tokenizer " + gpt2_path() + " " + args);
    EXPECT_EQ(run.status, 2) << args << "\n" << run.err;
    EXPECT_NE(run.err.find(message), std::string::npos) << "want: " << message << "\ngot:  " << run.err;
    EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1) << run.err;  // one line
    EXPECT_EQ(snapshot(in), before) << args;  // the same files with the same bytes
  };
  const auto is_input = [](const fs::path& output, const fs::path& input) {
    return "qdata: error: " + output.string() + ": key '--output': is the input file " + input.string() +
           " (the output would replace it) (expected: an output that is none of the --input files)";
  };
  const auto in_folder = [](const fs::path& output, const std::string& key) {
    return "qdata: error: " + output.string() + ": key '" + key + "': lies inside the input folder ";
  };

  // The output is the input file: as given; by a relative path through ".." (relative to the
  // source tree, where run_tool starts qdata); as the target of a link in an input folder.
  expect_refused(input_output(a, a), is_input(a, a));
  const fs::path rel = fs::relative(in, testing::source_dir());
  expect_refused(input_output(rel / "corpus/a.txt.gz", rel / "corpus/sub/../a.txt.gz"),
                 is_input(rel / "corpus/sub/../a.txt.gz", rel / "corpus/a.txt.gz"));
  expect_refused(input_output(in / "linked", in / "outside/c.txt"), is_input(in / "outside/c.txt", in / "linked/c.txt"));

  // The output inside an input folder: directly, through "..", through a link to the folder.
  expect_refused(input_output(in / "corpus", in / "corpus/out.h5"),
                 in_folder(in / "corpus/out.h5", "--output") + (in / "corpus").string() +
                     " (expected: an output outside every --input folder)");
  expect_refused(input_output(rel / "corpus", rel / "corpus/../corpus/out.h5"),
                 in_folder(rel / "corpus/../corpus/out.h5", "--output") + (rel / "corpus").string());
  expect_refused(input_output(in / "corpus", in / "link/sub/b.txt"), in_folder(in / "link/sub/b.txt", "--output"));
  expect_refused(input_output(in / "link", in / "corpus/new/out.h5"), in_folder(in / "corpus/new/out.h5", "--output"));
  EXPECT_FALSE(fs::exists(in / "corpus/new"));  // refused before the output's folder is made

  // The validation output likewise, and the two outputs must differ however they are spelt.
  const std::string split = input_output(in / "corpus", dir / "train.h5") + " --val-fraction 0.5 --val-output ";
  expect_refused(split + quoted(in / "corpus/sub/b.txt"), in_folder(in / "corpus/sub/b.txt", "--val-output"));
  expect_refused(split + quoted(dir / "./train.h5"), "qdata: error: " + (dir / "./train.h5").string() +
                                                         ": key '--val-output': the validation split needs its own file "
                                                         "(expected: a file other than --output)");
  EXPECT_FALSE(fs::exists(dir / "train.h5"));

  // A name that only begins like the folder's lies outside it.
  const auto beside = run_tool(dir, "qdata", "--tokenizer " + gpt2_path() + " " + input_output(in / "corpus", in / "corpus.h5"));
  EXPECT_EQ(beside.status, 0) << beside.err;
  EXPECT_EQ(read_token_file(in / "corpus.h5").offsets.size(), 3u);  // its two documents
}

TEST(QdataCli, ThreadCountOutsideItsBoundIsRefused) {
  const auto dir = testing::scratch_dir();
  write_text(dir / "a.txt", paragraphs()[0]);
  for (const std::string threads : {"0", "1025"}) {
    const auto r = run_bad(dir, "--tokenizer " + gpt2_path() + " --input " + quoted(dir / "a.txt") + " --threads " + threads);
    EXPECT_EQ(r.status, 2) << r.err;
    EXPECT_EQ(r.err, "qdata: error: key '--threads': got " + threads + " (expected: 1 to 1024 tokenizer threads)\n");
    EXPECT_FALSE(r.left_output);
  }
}

// More threads than the system will start: std::thread throws std::system_error (EAGAIN),
// which must end as bad input (status 2, naming --threads and how many started), with the
// started threads stopped and joined (destroying a joinable std::thread would abort). The
// limit is on address space: 1 GB thread stacks (ulimit -s) within 16 GB (ulimit -v) leave
// room for the process (about 1 GB) and a few threads, not for 1001. A limit on processes
// (ulimit -u, RLIMIT_NPROC) would not do: it does not bind root, as in CI containers.
TEST(QdataCli, ThreadsTheSystemRefusesEndWithStatus2) {
  const auto dir = testing::scratch_dir();
  write_paragraph_corpus(dir / "corpus", 50);
  const auto run = run_tool(dir, "qdata",
                            "--tokenizer " + gpt2_path() + " " + input_output(dir / "corpus", dir / "out.h5") +
                                " --threads 1000",
                            "ulimit -s 1048576 && ulimit -v 16777216 &&");
  EXPECT_EQ(run.status, 2) << run.err;
  const std::string prefix = "qdata: error: key '--threads': could start only ";
  ASSERT_EQ(run.err.rfind(prefix, 0), 0u) << run.err;
  const int started = std::stoi(run.err.substr(prefix.size()));
  EXPECT_GE(started, 1);  // so the path that joins started threads ran
  EXPECT_LT(started, 1001);
  EXPECT_NE(run.err.find(" of the 1001 threads needed (1000 tokenizer threads and a reader): "
                         "Resource temporarily unavailable (expected: fewer threads, within the limits on "
                         "threads and memory (ulimit -u, ulimit -v))\n"),
            std::string::npos)
      << run.err;
  EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1) << run.err;
  for (const auto& entry : fs::directory_iterator(dir))  // not even the writer's temporary file
    EXPECT_EQ(entry.path().filename().string().rfind("out.h5", 0), std::string::npos) << entry.path();
}

}  // namespace
}  // namespace qtrain::data
