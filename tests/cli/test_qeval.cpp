// The built qeval: --json output equals transformers' perplexity, under mpirun the ranks
// split the windows and agree, bad input exits with status 2 and one line naming it, and
// a token file made with another tokenizer than the model folder's is refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "data/token_writer.h"
#include "model/safetensors.h"
#include "data/tokenizer.h"
#include "tests/test_util.h"

namespace qtrain {
namespace {

using testing::run_tool;

TEST(QevalCli, JsonPerplexityMatchesTransformers) {
  const auto dir = testing::scratch_dir();
  const auto run = run_tool(dir, "qeval",
                            "--model tests/fixtures/llama_gqa_llama3 --data tests/fixtures/tokens.h5 --seq-len 64 "
                            "--batch-size 7 --device cpu --json");
  ASSERT_EQ(run.status, 0) << run.err;
  const auto got = nlohmann::json::parse(run.out);
  const auto reference = nlohmann::json::parse(testing::read_text(testing::fixture("llama_gqa_llama3/reference.json")));
  EXPECT_NEAR(got["perplexity"].get<double>(), reference["perplexity"].get<double>(),
              1e-5 * reference["perplexity"].get<double>());
  EXPECT_EQ(got["windows"], 24);
  EXPECT_EQ(got["tokens"], 24 * 63);
  EXPECT_TRUE(got.contains("mean_nll"));
}

// Two token files, one load: each file's perplexity as a run on it alone gives, the first
// file's also at the top level; here the second file is the first cut to its first 12 windows.
TEST(QevalCli, SeveralTokenFilesAreEvaluatedWithOneLoad) {
  const auto dir = testing::scratch_dir();
  const auto one = run_tool(dir, "qeval",
                            "--model tests/fixtures/llama_gqa_llama3 --data tests/fixtures/tokens.h5 --seq-len 64 "
                            "--max-windows 12 --device cpu --json");
  ASSERT_EQ(one.status, 0) << one.err;
  const auto both = run_tool(dir, "qeval",
                             "--model tests/fixtures/llama_gqa_llama3 --data tests/fixtures/tokens.h5 "
                             "tests/fixtures/tokens.h5 --seq-len 64 --max-windows 12 --device cpu --json");
  ASSERT_EQ(both.status, 0) << both.err;
  const auto a = nlohmann::json::parse(one.out), b = nlohmann::json::parse(both.out);
  ASSERT_EQ(b["datasets"].size(), 2u);
  for (const auto& d : b["datasets"]) {
    EXPECT_EQ(d["perplexity"], a["perplexity"]);
    EXPECT_EQ(d["windows"], 12);
  }
  EXPECT_EQ(b["perplexity"], a["perplexity"]);
  EXPECT_FALSE(a.contains("datasets"));
  const auto text = run_tool(dir, "qeval",
                             "--model tests/fixtures/llama_gqa_llama3 --data tests/fixtures/tokens.h5 "
                             "tests/fixtures/tokens.h5 --seq-len 64 --max-windows 2 --device cpu");
  ASSERT_EQ(text.status, 0) << text.err;
  EXPECT_EQ(std::count(text.out.begin(), text.out.end(), '\n'), 2) << text.out;
  EXPECT_NE(text.out.find("tests/fixtures/tokens.h5: perplexity "), std::string::npos) << text.out;
}

// Weights holding NaN (issue 24): the evaluation ends with status 2 and an error naming the
// checkpoint, instead of printing "perplexity -nan" and exiting 0.
TEST(QevalCli, NonFiniteWeightsEndTheEvaluationNamingTheCheckpoint) {
  const auto dir = testing::scratch_dir();
  const auto folder = dir / "nan_model";
  std::filesystem::create_directories(folder);
  std::filesystem::copy_file(testing::fixture("qwen2_bias/config.json"), folder / "config.json");
  const auto st = model::SafetensorsFile::open(testing::fixture("qwen2_bias/model.safetensors").string());
  model::NamedTensors tensors;
  for (const auto& e : st->entries()) tensors.emplace_back(e.name, st->tensor(e.name).clone());
  for (auto& [name, t] : tensors)
    if (name == "model.layers.0.mlp.down_proj.weight") t[0][0] = std::numeric_limits<float>::quiet_NaN();
  model::save_safetensors((folder / "model.safetensors").string(), tensors);
  const auto run = run_tool(dir, "qeval", "--model '" + folder.string() +
                                              "' --data tests/fixtures/tokens.h5 --seq-len 64 --device cpu --json");
  EXPECT_EQ(run.status, 2) << run.out << run.err;
  EXPECT_NE(run.err.find("nan_model"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("not finite"), std::string::npos) << run.err;
  EXPECT_EQ(run.out.find("nan"), std::string::npos) << run.out;
}

// A token file whose forged metadata crashes libhdf5 (fuzz/regressions/token_file): status 2
// and one line naming the file, not SIGSEGV (the open parses in a child process first).
TEST(QevalCli, ATokenFileThatCrashesTheHdf5LibraryExitsWithStatus2) {
  const auto dir = testing::scratch_dir();
  const auto run = run_tool(dir, "qeval",
                            "--model tests/fixtures/llama_gqa_llama3 --data fuzz/regressions/token_file/hdf5-null-memcpy.h5 "
                            "--seq-len 64 --device cpu");
  EXPECT_EQ(run.status, 2) << run.out << run.err;
  EXPECT_NE(run.err.find("hdf5-null-memcpy.h5: "), std::string::npos) << run.err;  // crashed, or refused by a newer libhdf5
  EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1) << run.err;
}

// A config.json within every size bound whose model would still need terabytes (hidden
// 65,536, intermediate 2^20, 64 layers: 1.3e13 parameters): refused with status 2 before
// anything is allocated (issue 25: the allocator failed half way, status 1).
// The fixture Llama copied to dir/name with its config.json's sizes changed (the weights stay
// small: these tests fail before any weight is read).
std::filesystem::path fixture_resized(const std::filesystem::path& dir, const std::string& name, int64_t hidden,
                                      int64_t intermediate, int64_t layers) {
  const auto folder = dir / name;
  std::filesystem::copy(testing::fixture("llama_gqa_llama3"), folder, std::filesystem::copy_options::recursive);
  auto config = nlohmann::json::parse(testing::read_text(folder / "config.json"));
  config["hidden_size"] = hidden;
  config["intermediate_size"] = intermediate;
  config["num_hidden_layers"] = layers;
  std::ofstream(folder / "config.json") << config.dump();
  return folder;
}

TEST(QevalCli, AModelLargerThanTheHostIsRefusedBeforeLoading) {
  const auto dir = testing::scratch_dir();
  const auto folder = fixture_resized(dir, "huge", 65536, 1 << 20, 64);
  const auto run = run_tool(dir, "qeval", "--model '" + folder.string() + "' --data tests/fixtures/tokens.h5 --seq-len 64 --device cpu");
  EXPECT_EQ(run.status, 2) << run.err;
  EXPECT_NE(run.err.find("huge/config.json: the model needs "), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("GB of host memory to load"), std::string::npos) << run.err;
}

// A model that passes that check but more than the process may hold (6.4 GB of fp32 under a
// 6 GB address-space limit): LibTorch's failed allocation is status 2, "out of host memory",
// not "internal error (LibTorch)" with status 1.
TEST(QevalCli, AnAllocationTheHostRefusesIsStatus2) {
  const auto dir = testing::scratch_dir();
  const auto folder = fixture_resized(dir, "large", 4096, 16384, 8);
  const auto run = run_tool(dir, "qeval",
                            "--model '" + folder.string() + "' --data tests/fixtures/tokens.h5 --seq-len 64 --device cpu",
                            "ulimit -v 6000000 &&");
  EXPECT_EQ(run.status, 2) << run.err;
  EXPECT_EQ(run.err.rfind("qeval: error: out of host memory; you tried to allocate ", 0), 0u) << run.err;
}

TEST(QevalCli, TwoRanksSplitTheWindowsAndAgree) {
  const auto dir = testing::scratch_dir();
  const auto run = run_tool(dir, "qeval",
                            "--model tests/fixtures/qwen2_bias --data tests/fixtures/tokens.h5 --seq-len 64 --device cpu --json",
                            testing::mpirun(2));
  ASSERT_EQ(run.status, 0) << run.err;
  const auto got = nlohmann::json::parse(run.out);  // rank 0 alone prints
  const auto reference = nlohmann::json::parse(testing::read_text(testing::fixture("qwen2_bias/reference.json")));
  EXPECT_EQ(got["ranks"], 2);
  EXPECT_NEAR(got["perplexity"].get<double>(), reference["perplexity"].get<double>(),
              1e-5 * reference["perplexity"].get<double>());
}

TEST(QevalCli, BadInputExitsWithStatus2) {
  const auto dir = testing::scratch_dir();
  const auto missing = run_tool(dir, "qeval", "--model tests/fixtures/nope --data tests/fixtures/tokens.h5 --seq-len 64");
  EXPECT_EQ(missing.status, 2);
  EXPECT_EQ(missing.err, "qeval: error: tests/fixtures/nope: not a checkpoint folder (no such directory)\n");
  const auto no_seq = run_tool(dir, "qeval", "--model tests/fixtures/qwen2_bias --data tests/fixtures/tokens.h5");
  EXPECT_EQ(no_seq.status, 2);
  EXPECT_NE(no_seq.err.find("seq-len"), std::string::npos) << no_seq.err;
  const auto bad_data = run_tool(dir, "qeval", "--model tests/fixtures/qwen2_bias --data CMakeLists.txt --seq-len 8");
  EXPECT_EQ(bad_data.status, 2);
  EXPECT_EQ(bad_data.err,
            "qeval: error: CMakeLists.txt: not an HDF5 file (or a truncated one) (expected: an HDF5 token file "
            "(docs/formats.md))\n");
  const auto too_long = run_tool(dir, "qeval", "--model tests/fixtures/qwen2_bias --data tests/fixtures/tokens.h5 --seq-len 5000");
  EXPECT_EQ(too_long.status, 2);
  EXPECT_NE(too_long.err.find("fewer than one window"), std::string::npos) << too_long.err;
}

TEST(QevalCli, AnErrorOnTwoRanksEndsTheJobWithStatus2) {
  const auto dir = testing::scratch_dir();
  const auto run = run_tool(dir, "qeval", "--model tests/fixtures/nope --data tests/fixtures/tokens.h5 --seq-len 64",
                            testing::mpirun(2));
  EXPECT_EQ(run.status, 2) << run.err;
  EXPECT_NE(run.err.find("not a checkpoint folder"), std::string::npos) << run.err;
}

// GPT-2's tokenizer cut down to its 256 byte tokens (ids 0..255, no merges, no added
// tokens): a real byte-level BPE tokenizer, with its own fingerprint, whose ids fit the
// 256-id fixture models.
std::filesystem::path write_byte_tokenizer(const std::filesystem::path& dir) {
  auto json = nlohmann::json::parse(testing::read_text(testing::fixture("tokenizer/gpt2/tokenizer.json")));
  nlohmann::json vocab = nlohmann::json::object();
  for (const auto& [piece, id] : json["model"]["vocab"].items())
    if (id.get<int>() < 256) vocab[piece] = id;
  json["model"]["vocab"] = vocab;
  json["model"]["merges"] = nlohmann::json::array();
  json["added_tokens"] = nlohmann::json::array();
  const auto path = dir / "byte_tokenizer.json";
  std::ofstream(path) << json.dump();
  return path;
}

// The fixture model's files, plus `tokenizer` as the folder's tokenizer.json.
std::filesystem::path model_with_tokenizer(const std::filesystem::path& dir, const std::filesystem::path& tokenizer) {
  const auto folder = dir / "model";
  std::filesystem::create_directories(folder);
  for (const auto& entry : std::filesystem::directory_iterator(testing::fixture("llama_gqa_llama3")))
    std::filesystem::copy_file(entry.path(), folder / entry.path().filename());
  std::filesystem::copy_file(tokenizer, folder / "tokenizer.json");
  return folder;
}

// The tokenizer fixture's corpus, encoded with `tokenizer`, as a token file with its fingerprint.
std::filesystem::path write_tokens(const std::filesystem::path& path, const data::Tokenizer& tokenizer) {
  data::TokenFileWriter writer(path.string(), {tokenizer.vocab_size(), tokenizer.fingerprint(), data::TokenType::uint16});
  writer.append_document(tokenizer.encode(testing::read_text(testing::fixture("tokenizer/corpus.txt"))));
  writer.commit();
  return path;
}

TEST(QevalCli, RefusesTokensMadeWithAnotherTokenizerThanTheModelFolders) {
  const auto dir = testing::scratch_dir();
  const auto bytes = data::load_tokenizer(write_byte_tokenizer(dir).string());
  const auto gpt2 = data::load_tokenizer(testing::fixture("tokenizer/gpt2/tokenizer.json").string());
  ASSERT_NE(bytes->fingerprint(), gpt2->fingerprint());
  const auto tokens = write_tokens(dir / "tokens.h5", *bytes);

  // The folder's tokenizer made the file: evaluated.
  const auto same_dir = dir / "same";
  std::filesystem::create_directories(same_dir);
  const auto same = model_with_tokenizer(same_dir, dir / "byte_tokenizer.json");
  const auto ok = run_tool(dir, "qeval", "--model '" + same.string() + "' --data '" + tokens.string() +
                                            "' --seq-len 32 --device cpu --json");
  ASSERT_EQ(ok.status, 0) << ok.err;
  EXPECT_GT(nlohmann::json::parse(ok.out)["windows"].get<int64_t>(), 0);

  // GPT-2's tokenizer in the folder: refused before the model is loaded, naming both.
  const auto other_dir = dir / "other";
  std::filesystem::create_directories(other_dir);
  const auto other = model_with_tokenizer(other_dir, testing::fixture("tokenizer/gpt2/tokenizer.json"));
  const auto refused = run_tool(dir, "qeval", "--model '" + other.string() + "' --data '" + tokens.string() +
                                                 "' --seq-len 32 --device cpu --json");
  EXPECT_EQ(refused.status, 2);
  EXPECT_EQ(refused.err, "qeval: error: " + tokens.string() +
                             ": key 'tokenizer_fingerprint': token file was made with another tokenizer: its "
                             "tokenizer_fingerprint is " + bytes->fingerprint() + ", " + (other / "tokenizer.json").string() +
                             " has " + gpt2->fingerprint() +
                             " (expected: token files made by qdata with the model's tokenizer)\n");
  EXPECT_EQ(refused.out, "");

  // A file without a fingerprint (tokens.h5, written by h5py) cannot be checked: evaluated.
  const auto unchecked = run_tool(dir, "qeval", "--model '" + other.string() +
                                                   "' --data tests/fixtures/tokens.h5 --seq-len 64 --device cpu --json");
  EXPECT_EQ(unchecked.status, 0) << unchecked.err;
}

}  // namespace
}  // namespace qtrain
