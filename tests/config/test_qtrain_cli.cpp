// The built qtrain binary: bad configs exit with status 2 and one line on stderr, and
// --dry-run on configs/demo.yaml prints YAML that reads back to the same config.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "config/embedded.h"
#include "config/load.h"
#include "config/print.h"
#include "model/hf_checkpoint.h"
#include "tests/test_util.h"
#include "trainer/checkpoint.h"

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

// Documents that expand without bound are refused, in the config file and through --set,
// with status 2, one line, and in bounded time (each run here takes about a second; the
// recursive alias crashed with SIGSEGV, the "billion laughs" would have expanded to 10^9
// values): a recursive alias, 10 aliases of 10 aliases 9 levels deep, 100,000 nested
// brackets, and a file of more than 1 MiB.
TEST(QtrainCli, DocumentsThatExpandWithoutBoundExitWithStatus2) {
  const auto dir = testing::scratch_dir();
  std::string laughs = "&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]";
  for (int i = 1; i <= 9; ++i) {
    std::string next = "&a" + std::to_string(i) + " [" + laughs;
    for (int j = 1; j < 10; ++j) next += ", *a" + std::to_string(i - 1);
    laughs = next + "]";
  }
  const std::vector<std::pair<std::string, std::string>> cases{
      {"recursive", "quant:\n  rules: &a [*a]\n"},
      {"laughs", "quant:\n  rules: " + laughs + "\n"},
      {"deep", "quant:\n  rules: " + std::string(100000, '[') + std::string(100000, ']') + "\n"},
      {"huge", "run:\n  name: x\n" + std::string(2 << 20, '#') + "\n"}};
  const std::map<std::string, std::string> reasons{{"recursive", "contains itself (a recursive YAML alias)"},
                                                   {"laughs", "expands to more than 100000 items"},
                                                   {"deep", "malformed YAML"},
                                                   {"huge", "at most 1 MiB"}};
  for (const auto& [name, text] : cases) {
    const auto path = dir / (name + ".yaml");
    std::ofstream(path) << text;
    const ToolRun run = run_qtrain(dir, "--config '" + path.string() + "' --dry-run");
    EXPECT_EQ(run.status, 2) << name;
    EXPECT_NE(run.err.find(reasons.at(name)), std::string::npos) << name << ": " << run.err.substr(0, 300);
    EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1) << name;
  }
  const ToolRun set = run_qtrain(dir, "--set 'quant.rules=&a [*a]' --dry-run");
  EXPECT_EQ(set.status, 2);
  EXPECT_NE(set.err.find("--set: key 'quant.rules': the value contains itself"), std::string::npos) << set.err;
}

TEST(QtrainCli, DryRunOfDemoReadsBackToTheSameConfig) {
  const auto dir = testing::scratch_dir();
  const std::string overrides = "--set training.steps=70 --set model.teacher=tests/fixtures/llama_gqa_llama3 --set model.device=cpu";
  const ToolRun run = run_qtrain(dir, "--config configs/demo.yaml " + overrides + " --dry-run");
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_EQ(run.err, "");
  EXPECT_NE(run.out.find("  steps: 70  # --set\n"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("  seq_len: 256  # configs/demo.yaml:"), std::string::npos) << run.out;
  // The sizing estimate follows the config (trainer/estimate.h; its numbers: tests/trainer/test_estimate.cpp).
  EXPECT_NE(run.out.find("# estimate per rank (1 rank, CPU, fp32; docs/trainer.md):\n"), std::string::npos) << run.out;

  LoadedConfig printed = load_config_text(run.out, "dry-run.yaml");
  LoadedConfig demo = load_config((testing::source_dir() / "configs/demo.yaml").string(),
                                  {"training.steps=70", "model.teacher=tests/fixtures/llama_gqa_llama3", "model.device=cpu"});
  EXPECT_EQ(printed.job.training.steps, 70);
  EXPECT_EQ(printed.job.data.seq_len, 256);
  EXPECT_EQ(printed.job.model.teacher, "tests/fixtures/llama_gqa_llama3");
  EXPECT_EQ(to_yaml(bind(printed.job)), to_yaml(bind(demo.job)));
}

// The embedded demo trains on .cache/demo (scripts/demo.sh makes its teacher and token files;
// CI has neither), so this runs qtrain without --config with only the inputs pointed at the
// committed fixtures: the 2-layer, 256-id test Llama as teacher, a 1-layer student
// initialised from it as the demo's student is from its teacher, and the byte-level tokens.
TEST(QtrainCli, WithoutConfigRunsTheEmbeddedDemo) {
  const auto dir = testing::scratch_dir();
  const std::string args =
      "--set model.device=cpu --set run.output_dir=" + (dir / "demo").string() +
      " --set training.steps=2 --set training.warmup_steps=1 --set logging.progress=off"
      " --set model.teacher=tests/fixtures/llama_gqa_llama3 --set 'model.student_overrides=[num_hidden_layers=1]'"
      " --set data.train=tests/fixtures/tokens.h5 --set data.validation=tests/fixtures/tokens.h5"
      " --set data.seq_len=64 --set data.micro_batch_size=4 --set data.global_batch_size=8 --set eval.seq_len=64";
  const ToolRun run = run_qtrain(dir, args);
  EXPECT_EQ(run.status, 0) << run.err;
  EXPECT_NE(run.out.find("qtrain: step 2: student perplexity "), std::string::npos) << run.out;
  const auto checkpoint = dir / "demo/checkpoints/step_00000002";
  EXPECT_TRUE(std::filesystem::exists(checkpoint / "shard-00000-of-00001.safetensors"));
  EXPECT_EQ(nlohmann::json::parse(testing::read_text(checkpoint / "config.json"))["num_hidden_layers"], 1);
  // `qtrain export` of the checkpoint, in 40 KiB shards: the demo's compressed-tensors
  // folder, its unquantized tensors the checkpoint's fp32 weights rounded to bf16.
  const auto exported_dir = dir / "exported";
  const ToolRun exported = run_qtrain(dir, "export --max-shard-mb 0.04 --checkpoint " + checkpoint.string() +
                                               " --output " + exported_dir.string());
  ASSERT_EQ(exported.status, 0) << exported.err;
  EXPECT_TRUE(std::filesystem::exists(exported_dir / "model.safetensors.index.json"));
  const auto weights = trainer::LoadedCheckpoint::open(checkpoint.string()).tensors("model");
  const auto folder = model::HFCheckpoint::open(exported_dir.string());
  for (const auto& [name, w] : weights)
    if (name.find("_proj") == std::string::npos) EXPECT_TRUE(folder.tensor(name).equal(w.to(torch::kBFloat16))) << name;
  EXPECT_TRUE(folder.contains("model.layers.0.mlp.down_proj.weight_packed"));

  // A run without quantization exports a plain bf16 Hugging Face folder.
  const auto plain = dir / "plain";
  const ToolRun plain_run = run_qtrain(dir, args + " --set 'quant.rules=[]' --set training.steps=1 --set run.output_dir=" +
                                                plain.string());
  ASSERT_EQ(plain_run.status, 0) << plain_run.err;
  const auto plain_checkpoint = plain / "checkpoints/step_00000001";
  const ToolRun plain_export = run_qtrain(dir, "export --checkpoint " + plain_checkpoint.string() + " --output " +
                                                   (dir / "hf").string());
  ASSERT_EQ(plain_export.status, 0) << plain_export.err;
  const auto hf = model::HFCheckpoint::open((dir / "hf").string());
  const auto plain_weights = trainer::LoadedCheckpoint::open(plain_checkpoint.string()).tensors("model");
  ASSERT_EQ(hf.tensor_names().size(), plain_weights.size());
  for (const auto& [name, w] : plain_weights) EXPECT_TRUE(hf.tensor(name).equal(w.to(torch::kBFloat16))) << name;

  // A second run resumes (checkpoint.resume: auto), finds the run finished and only evaluates.
  const ToolRun again = run_qtrain(dir, args);
  EXPECT_EQ(again.status, 0) << again.err;
  EXPECT_NE(again.err.find("resumed from"), std::string::npos) << again.err;
  EXPECT_NE(again.out.find("qtrain: step 2: student perplexity "), std::string::npos) << again.out;
}

TEST(QtrainCli, PrintsReferenceHelpAndVersion) {
  const auto dir = testing::scratch_dir();
  const ToolRun reference = run_qtrain(dir, "--print-config-reference");
  EXPECT_EQ(reference.status, 0);
  EXPECT_EQ(reference.out, reference_markdown());
  const ToolRun help = run_qtrain(dir, "--help");
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.out.find("--set KEY=VALUE"), std::string::npos) << help.out;
  EXPECT_NE(help.out.find("qtrain quantize --model"), std::string::npos) << help.out;  // the subcommands too
  EXPECT_NE(help.out.find("qtrain export --checkpoint"), std::string::npos) << help.out;
  const ToolRun version = run_qtrain(dir, "--version");
  EXPECT_EQ(version.out, "qtrain " + std::string(project_version()) + "\n");
}

}  // namespace
}  // namespace qtrain::config
