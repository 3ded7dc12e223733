// The built qeval: --json output equals transformers' perplexity, under mpirun the ranks
// split the windows and agree, and bad input exits with status 2 and one line naming it.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

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

}  // namespace
}  // namespace qtrain
