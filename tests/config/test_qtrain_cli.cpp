// The built qtrain binary: bad configs exit with status 2 and one line on stderr, and
// --dry-run on configs/demo.yaml prints YAML that reads back to the same config.
#include <gtest/gtest.h>

#include <fstream>

#include "config/embedded.h"
#include "config/load.h"
#include "config/print.h"
#include "tests/test_util.h"

namespace qtrain::config {
namespace {

using testing::ToolRun;

ToolRun run_qtrain(const std::filesystem::path& dir, const std::string& args) {
  return testing::run_tool(dir, "qtrain", args);
}

TEST(QtrainCli, BadConfigExitsWithStatus2AndOneLine) {
  const auto dir = testing::scratch_dir();
  const auto path = dir / "bad.yaml";
  std::ofstream(path) << "model:\n  teacher: t\ndata:\n  train: x.h5\n  seq_lenn: 64\n";
  const ToolRun run = run_qtrain(dir, "--config '" + path.string() + "'");
  EXPECT_EQ(run.status, 2);
  EXPECT_EQ(run.err, "qtrain: error: " + path.string() +
                         ":5: key 'data.seq_lenn': unknown key; did you mean 'seq_len'? (expected: one of train, "
                         "validation, tokenizer, seq_len, micro_batch_size, global_batch_size)\n");
  EXPECT_EQ(run.out, "");
}

TEST(QtrainCli, BadOverrideAndBadOptionExitWithStatus2) {
  const auto dir = testing::scratch_dir();
  const ToolRun override_run = run_qtrain(dir, "--set training.lr=0");
  EXPECT_EQ(override_run.status, 2);
  EXPECT_EQ(override_run.err, "qtrain: error: --set: key 'training.lr': value 0 is out of range (expected: > 0)\n");
  const ToolRun option_run = run_qtrain(dir, "--no-such-option");
  EXPECT_EQ(option_run.status, 2);
  EXPECT_NE(option_run.err.find("--no-such-option"), std::string::npos) << option_run.err;
}

TEST(QtrainCli, DryRunOfDemoReadsBackToTheSameConfig) {
  const auto dir = testing::scratch_dir();
  const ToolRun run = run_qtrain(dir, "--config configs/demo.yaml --set training.steps=7 --dry-run");
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_EQ(run.err, "");
  EXPECT_NE(run.out.find("  steps: 7  # --set\n"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("  seq_len: 64  # configs/demo.yaml:"), std::string::npos) << run.out;

  LoadedConfig printed = load_config_text(run.out, "dry-run.yaml");
  LoadedConfig demo = load_config((testing::source_dir() / "configs/demo.yaml").string(), {"training.steps=7"});
  EXPECT_EQ(printed.job.training.steps, 7);
  EXPECT_EQ(printed.job.data.seq_len, 64);
  EXPECT_EQ(printed.job.model.teacher, "tests/fixtures/llama_gqa_llama3");
  EXPECT_EQ(to_yaml(bind(printed.job)), to_yaml(bind(demo.job)));
}

TEST(QtrainCli, WithoutConfigRunsTheEmbeddedDemo) {
  const auto dir = testing::scratch_dir();
  const ToolRun run = run_qtrain(dir, "--set model.device=cpu --set run.output_dir=" + (dir / "demo").string() +
                                          " --set training.steps=2 --set logging.progress=off");
  EXPECT_EQ(run.status, 0) << run.err;
  EXPECT_NE(run.out.find("qtrain: step 2: student perplexity "), std::string::npos) << run.out;
  EXPECT_TRUE(std::filesystem::exists(dir / "demo/checkpoints/step_00000002/model.safetensors"));
}

TEST(QtrainCli, PrintsReferenceHelpAndVersion) {
  const auto dir = testing::scratch_dir();
  const ToolRun reference = run_qtrain(dir, "--print-config-reference");
  EXPECT_EQ(reference.status, 0);
  EXPECT_EQ(reference.out, reference_markdown());
  const ToolRun help = run_qtrain(dir, "--help");
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.out.find("--set KEY=VALUE"), std::string::npos) << help.out;
  const ToolRun version = run_qtrain(dir, "--version");
  EXPECT_EQ(version.out, "qtrain " + std::string(project_version()) + "\n");
}

}  // namespace
}  // namespace qtrain::config
