// config/print.h: the dry-run YAML reads back to the same config, and docs/config.md holds
// exactly the generated key reference (scripts/gen-config-doc.sh rewrites it).
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "config/load.h"
#include "config/print.h"
#include "tests/test_util.h"

namespace qtrain::config {
namespace {

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(ConfigPrint, DryRunYamlReadsBackToTheSameConfig) {
  const LoadedConfig original = load_config_text(
      "model:\n  teacher: /m/llama\n  dtype: bf16\ndata:\n  train: a.h5\n  seq_len: 128\n", "job.yaml",
      {"training.lr=3e-4", "run.name=exp 1: \"quoted\""});
  const std::string yaml = to_yaml(original);
  EXPECT_NE(yaml.find("  seq_len: 128  # job.yaml:6\n"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("  lr: 0.0003  # --set\n"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("  batch_size: 8\n"), std::string::npos) << yaml;  // a default: no source

  const LoadedConfig reread = load_config_text(yaml, "dry-run.yaml");
  EXPECT_EQ(reread.job.run.name, "exp 1: \"quoted\"");
  EXPECT_EQ(reread.job.model.dtype, ComputeDtype::bf16);
  EXPECT_EQ(reread.job.data.seq_len, 128);
  EXPECT_DOUBLE_EQ(reread.job.training.lr, 3e-4);
  JobConfig a = original.job, b = reread.job;
  EXPECT_EQ(to_yaml(bind(a)), to_yaml(bind(b)));
}

TEST(ConfigPrint, EveryFieldIsPrinted) {
  JobConfig job;
  Schema schema = bind(job);
  const std::string yaml = to_yaml(schema);
  for (const auto& entry : schema.entries()) {
    const std::string line = std::string(2 * entry.depth, ' ') + entry.name + ":";
    EXPECT_NE(yaml.find("\n" + line), std::string::npos) << entry.key;
  }
}

TEST(ConfigDoc, DocsConfigMdHoldsTheGeneratedReference) {
  const std::string doc = read_text(testing::source_dir() / "docs/config.md");
  const std::string begin = "<!-- BEGIN GENERATED: qtrain --print-config-reference -->\n";
  const std::string end = "<!-- END GENERATED -->";
  const size_t from = doc.find(begin), to = doc.find(end);
  ASSERT_NE(from, std::string::npos);
  ASSERT_NE(to, std::string::npos);
  EXPECT_EQ(doc.substr(from + begin.size(), to - from - begin.size()), reference_markdown())
      << "docs/config.md is out of date: run scripts/gen-config-doc.sh";
}

}  // namespace
}  // namespace qtrain::config
