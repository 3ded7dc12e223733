// The built qeval's multiple-choice and generation options: --tasks gives the accuracies
// transformers gives (tests/fixtures/mc/reference_*.json), the same on two ranks, next to
// perplexity in one call; --prompt-ids decodes what eval::generate decodes; missing work or
// a missing tokenizer exits with status 2 and one line.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "eval/generate.h"
#include "model/hf_checkpoint.h"
#include "tests/test_util.h"

namespace qtrain {
namespace {

using testing::run_tool;

const std::string kTasks =
    "--tasks tests/fixtures/mc/tiny_tasks.jsonl --tokenizer tests/fixtures/mc/byte_tokenizer --device cpu --json";

nlohmann::json reference(const std::string& model) {
  return nlohmann::json::parse(testing::read_text(testing::fixture("mc/reference_" + model + ".json")));
}

TEST(QevalTasks, AccuracyMatchesTransformersOnOneAndTwoRanks) {
  const auto dir = testing::scratch_dir();
  const auto expected = reference("llama_gqa_llama3");
  for (const int ranks : {1, 2}) {
    const auto run = run_tool(dir, "qeval", "--model tests/fixtures/llama_gqa_llama3 " + kTasks,
                              ranks > 1 ? testing::mpirun(ranks) : "");
    ASSERT_EQ(run.status, 0) << run.err;
    const auto task = nlohmann::json::parse(run.out)["tasks"][0];
    EXPECT_EQ(task["task"], "tiny_tasks");
    EXPECT_EQ(task["count"], 36);
    EXPECT_DOUBLE_EQ(task["acc"].get<double>(), expected["acc"].get<double>()) << ranks << " ranks";
    EXPECT_DOUBLE_EQ(task["acc_norm"].get<double>(), expected["acc_norm"].get<double>()) << ranks << " ranks";
    EXPECT_NEAR(task["acc_stderr"].get<double>(), expected["acc_stderr"].get<double>(), 1e-12);
  }
}

TEST(QevalTasks, PerplexityAndTasksInOneCall) {
  const auto dir = testing::scratch_dir();
  const auto run = run_tool(dir, "qeval", "--model tests/fixtures/qwen2_bias --data tests/fixtures/tokens.h5 --seq-len 64 " +
                                              kTasks + " --limit 10");
  ASSERT_EQ(run.status, 0) << run.err;
  const auto j = nlohmann::json::parse(run.out);
  const auto ppl = nlohmann::json::parse(testing::read_text(testing::fixture("qwen2_bias/reference.json")))["perplexity"];
  EXPECT_NEAR(j["perplexity"].get<double>(), ppl.get<double>(), 1e-5 * ppl.get<double>());
  EXPECT_EQ(j["tasks"][0]["count"], 10);
}

TEST(QevalTasks, PromptIdsGenerateWhatTheLibraryGenerates) {
  const auto dir = testing::scratch_dir();
  const auto run = run_tool(dir, "qeval", "--model tests/fixtures/mistral_linear --prompt-ids 72,101,108,108,111 "
                                          "--max-new-tokens 6 --temperature 0.8 --top-k 5 --seed 3 --device cpu --json");
  ASSERT_EQ(run.status, 0) << run.err;
  const auto generation = nlohmann::json::parse(run.out)["generation"];
  auto model = model::load_causal_lm(testing::fixture("mistral_linear").string());
  eval::GenerateOptions o;
  o.max_new_tokens = 6;
  o.sampling.temperature = 0.8;
  o.sampling.top_k = 5;
  o.sampling.seed = 3;
  EXPECT_EQ(generation["tokens"].get<std::vector<int64_t>>(), eval::generate(*model, {72, 101, 108, 108, 111}, o).tokens);
  EXPECT_EQ(generation["prompt_tokens"], 5);
  // With the byte tokenizer the text is printed too.
  const auto text = run_tool(dir, "qeval", "--model tests/fixtures/mistral_linear --generate Hello --max-new-tokens 4 "
                                           "--tokenizer tests/fixtures/mc/byte_tokenizer --device cpu");
  ASSERT_EQ(text.status, 0) << text.err;
  EXPECT_EQ(text.out.rfind("Hello", 0), 0u) << text.out;
}

TEST(QevalTasks, BadRequestsExitWithStatus2) {
  const auto dir = testing::scratch_dir();
  const auto nothing = run_tool(dir, "qeval", "--model tests/fixtures/qwen2_bias");
  EXPECT_EQ(nothing.status, 2);
  EXPECT_NE(nothing.err.find("nothing to evaluate"), std::string::npos) << nothing.err;
  const auto no_tokenizer = run_tool(dir, "qeval", "--model tests/fixtures/qwen2_bias --generate hi --device cpu");
  EXPECT_EQ(no_tokenizer.status, 2);
  EXPECT_NE(no_tokenizer.err.find("--tokenizer"), std::string::npos) << no_tokenizer.err;
  const auto bad_ids = run_tool(dir, "qeval", "--model tests/fixtures/qwen2_bias --prompt-ids 1,x --device cpu");
  EXPECT_EQ(bad_ids.status, 2);
  EXPECT_NE(bad_ids.err.find("not a token id"), std::string::npos) << bad_ids.err;
  const auto missing_task = run_tool(dir, "qeval", "--model tests/fixtures/qwen2_bias --tasks nope.jsonl "
                                                   "--tokenizer tests/fixtures/mc/byte_tokenizer --device cpu");
  EXPECT_EQ(missing_task.status, 2);
  EXPECT_NE(missing_task.err.find("nope.jsonl"), std::string::npos) << missing_task.err;
}

}  // namespace
}  // namespace qtrain
