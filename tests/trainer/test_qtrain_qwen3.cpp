// A Qwen3 teacher (tests/fixtures/qwen3_reference/untied: q_norm/k_norm, head_dim 32) through
// the whole job: distillation into a copy with NVFP4 QAT, and structured pruning of KV groups
// and MLP channels with w4a16 QAT, each exported and evaluated by the integer evaluator. With
// the unquantized tensors exported in fp32 the export's perplexity equals the trained
// student's within 1e-4 relative, and the pruned export loads as a smaller Qwen3.
#include <gtest/gtest.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "tests/test_util.h"

namespace qtrain {
namespace {

using testing::run_tool;

const std::string kQwen3 =
    "--config tests/fixtures/train_tiny.yaml --set model.teacher=tests/fixtures/qwen3_reference/untied "
    "--set model.student=copy --set \"model.student_overrides=[]\" --set distill.gamma=0 --set training.steps=4 --set checkpoint.every_steps=4 "
    "--set quant.export_dtype=fp32 ";

// The two perplexities qtrain prints after its export: the student's and the export's.
std::pair<double, double> printed(const std::string& out, const std::string& what) {
  const auto line = out.find(what + " student ");
  if (line == std::string::npos) return {0, -1};
  double student = 0, exported = 0;
  const auto format = what + " student %lf, exported %*s checkpoint %lf";
  if (std::sscanf(out.c_str() + line, format.c_str(), &student, &exported) != 2) return {0, -1};
  return {student, exported};
}

TEST(QtrainQwen3, DistillsWithNvfp4QatAndExports) {
  const auto dir = testing::scratch_dir();
  const auto r = run_tool(dir, "qtrain", kQwen3 + "--set \"quant.rules=[lm_head=none, 're:.*=nvfp4']\" --set run.output_dir=" +
                                             (dir / "run").string());
  ASSERT_EQ(r.status, 0) << r.err;
  const auto [student, exported] = printed(r.out, "fake-quant");
  ASSERT_GT(student, 0) << r.out;
  EXPECT_NEAR(exported, student, 1e-4 * student);
  const auto config = nlohmann::json::parse(testing::read_text(dir / "run/export/config.json"));
  EXPECT_EQ(config["model_type"], "qwen3");
  EXPECT_EQ(config["quantization_config"]["format"], "nvfp4-pack-quantized");
}

TEST(QtrainQwen3, PrunesKvGroupsAndChannelsAndExportsASmallerQwen3) {
  const auto dir = testing::scratch_dir();
  const auto r = run_tool(dir, "qtrain", kQwen3 + "--set \"quant.rules=[lm_head=none, 're:.*=w4a16-g16']\" "
                                             "--set prune.mlp_sparsity=0.34 --set prune.heads_sparsity=0.5 "
                                             "--set prune.multiple=16 --set run.output_dir=" + (dir / "run").string());
  ASSERT_EQ(r.status, 0) << r.err;
  const auto [student, exported] = printed(r.out, "masked");
  ASSERT_GT(student, 0) << r.out;
  EXPECT_NEAR(exported, student, 1e-4 * student);
  const auto config = nlohmann::json::parse(testing::read_text(dir / "run/export/config.json"));
  EXPECT_EQ(config["model_type"], "qwen3");
  EXPECT_EQ(config["num_key_value_heads"], 1);
  EXPECT_EQ(config["intermediate_size"], 64);
  EXPECT_EQ(config["head_dim"], 32);
}

}  // namespace
}  // namespace qtrain
