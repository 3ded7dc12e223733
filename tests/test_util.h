// Helpers shared by the tests: fixture paths and a scratch directory per test.
#pragma once
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "common/remove_tree.h"
#include "data/token_file.h"
#include "eval/perplexity.h"

namespace qtrain::testing {

inline std::filesystem::path source_dir() { return QTRAIN_SOURCE_DIR; }
inline std::filesystem::path binary_dir() { return QTRAIN_BINARY_DIR; }
inline std::filesystem::path fixture(const std::string& rel) { return source_dir() / "tests/fixtures" / rel; }

// Perplexity of `m` on tests/fixtures/tokens.h5 in windows of `seq_len` (train_tiny.yaml's
// eval.seq_len is 64).
inline double fixture_perplexity(model::CausalLMImpl& m, int64_t seq_len = 64) {
  auto tokens = data::TokenFile::open(fixture("tokens.h5").string());
  eval::PerplexityOptions o;
  o.seq_len = seq_len;
  o.show_progress = false;
  return eval::evaluate_perplexity(m, tokens, o).perplexity;
}

// Largest |a - b| relative to the largest |b|, in fp64 (for comparisons of whole tensors
// whose entries may cancel, where element-wise relative errors mean nothing).
inline double relative_difference(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>() /
         b.to(torch::kFloat64).abs().max().item<double>();
}

// step -> the last metrics.jsonl record logged for it with a loss (a resumed run logs again
// the steps it redoes).
inline std::map<int64_t, nlohmann::json> step_records(const std::filesystem::path& run_dir) {
  std::map<int64_t, nlohmann::json> out;
  std::ifstream in(run_dir / "metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) out[j["step"].get<int64_t>()] = j;
  }
  return out;
}

// A fresh empty directory under the build tree, named after the running test.
inline std::filesystem::path scratch_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  auto dir = binary_dir() / "test-scratch" / (std::string(info->test_suite_name()) + "." + info->name());
  remove_tree(dir.string());  // not std::filesystem::remove_all (common/remove_tree.h)
  std::filesystem::create_directories(dir);
  return dir;
}

inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

struct ToolRun {
  int status = -1;  // exit status; -1 if killed by a signal
  std::string out, err;
};

// Runs a built tool (qtrain, qeval, ...) with `args` from the source tree (configs name paths
// relative to it); stdout and stderr go through files in `dir`. `prefix` goes before the
// tool (e.g. "mpirun -n 2").
inline ToolRun run_tool(const std::filesystem::path& dir, const std::string& tool, const std::string& args,
                        const std::string& prefix = "") {
  const std::string command = "cd '" + source_dir().string() + "' && " + prefix + " '" +
                              (binary_dir() / tool).string() + "' " + args + " > '" + (dir / "out").string() +
                              "' 2> '" + (dir / "err").string() + "'";
  const int raw = std::system(command.c_str());
  ToolRun run;
  run.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  run.out = read_text(dir / "out");
  run.err = read_text(dir / "err");
  return run;
}

// The launcher prefix for `ranks` MPI processes on this one machine (also as root, as in CI
// containers), for run_tool's `prefix`. A test process that was itself started by an MPI
// launcher carries OMPI_/PMIX_ variables that would make the child mpirun think it runs
// inside that job: drop them. One node needs no ssh, and machines without one (containers)
// would refuse to start: the rsh agent is set to `false`, which is never called here.
// `timeout --foreground` keeps mpirun in the caller's process group, so that a signal to
// the group reaches mpirun (and through it the ranks).
inline std::string mpirun(int ranks) {
  return "unset $(env | sed -n 's/^\\(\\(OMPI\\|PMIX\\|OPAL\\)_[A-Za-z0-9_]*\\)=.*/\\1/p'); "
         "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout --foreground 300 mpirun --oversubscribe "
         "--mca plm_rsh_agent false -n " +
         std::to_string(ranks);
}

}  // namespace qtrain::testing
