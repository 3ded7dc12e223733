// The launch scripts run the command lines they build: launch/slurm.sbatch with its launcher
// replaced by mpirun (no SLURM here), and launch/mpirun_multinode.sh with a one-node
// hostfile. Both resume by themselves when started again. launch/netns_cluster.sh runs a
// ZeRO-3 job across two hosts made of network namespaces, over TCP.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>

#include "tests/test_util.h"

namespace qtrain {
namespace {

namespace fs = std::filesystem;

testing::ToolRun run_script(const fs::path& dir, const std::string& env_and_command) {
  const std::string command = "cd '" + testing::source_dir().string() +
                              "' && unset $(env | sed -n 's/^\\(\\(OMPI\\|PMIX\\|OPAL\\)_[A-Za-z0-9_]*\\)=.*/\\1/p'); "
                              "export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 QTRAIN_BIN='" +
                              (testing::binary_dir() / "qtrain").string() + "'; " + env_and_command + " > '" +
                              (dir / "out").string() + "' 2> '" + (dir / "err").string() + "'";
  const int raw = std::system(command.c_str());
  testing::ToolRun run;
  run.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  run.out = testing::read_text(dir / "out");
  run.err = testing::read_text(dir / "err");
  return run;
}

TEST(Launch, SlurmScriptRunsItsCommandAndResumes) {
  const auto dir = testing::scratch_dir();
  const std::string command =
      "QTRAIN_LAUNCHER='timeout --foreground 300 mpirun --oversubscribe --mca plm_rsh_agent false -n 2' "
      "bash launch/slurm.sbatch tests/fixtures/train_tiny.yaml --set training.steps=2 --set logging.progress=off "
      "--set run.output_dir=" + (dir / "run").string();
  const auto first = run_script(dir, command);
  ASSERT_EQ(first.status, 0) << first.err;
  EXPECT_TRUE(fs::exists(dir / "run/checkpoints/step_00000002/manifest.json"));
  const auto second = run_script(dir, command);  // as a requeued job: resume: auto
  ASSERT_EQ(second.status, 0) << second.err;
  EXPECT_NE(second.err.find("resumed from"), std::string::npos) << second.err;
}

TEST(Launch, MultinodeScriptCountsTheHostfileSlots) {
  const auto dir = testing::scratch_dir();
  std::ofstream(dir / "hostfile") << "# one node\nlocalhost slots=2\n";
  const auto run = run_script(
      dir, "GPUS_PER_NODE=2 QTRAIN_MPIRUN_ARGS='--oversubscribe --mca plm_rsh_agent false' "
           "timeout 300 bash launch/mpirun_multinode.sh " + (dir / "hostfile").string() +
           " tests/fixtures/train_tiny.yaml --set training.steps=2 --set logging.progress=off --set run.output_dir=" +
           (dir / "run").string());
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_TRUE(fs::exists(dir / "run/checkpoints/step_00000002"));
  // The checkpoint records how many ranks wrote it: the hostfile's 2 slots.
  const auto state = testing::read_text(dir / "run/checkpoints/step_00000002/trainer_state.json");
  EXPECT_NE(state.find("\"world_size\": 2"), std::string::npos) << state.substr(0, 300);
}

// Two hosts of two ranks each, in network namespaces joined by a veth pair, Open MPI over
// TCP between them (launch/netns_cluster.sh): the ranks run two per host, and a ZeRO-3 job
// with the sharded teacher logs exactly the losses of the same job on 4 local ranks (the
// same collectives in the same order; only the transport differs).
TEST(Launch, TwoNamespaceHostsRunAStage3JobOverTcp) {
  const auto dir = testing::scratch_dir();
  const auto hosts = run_script(dir, "timeout 120 launch/netns_cluster.sh 2 hostname");
  if (hosts.status == 77) GTEST_SKIP() << "no network namespaces here: " << hosts.err;
  ASSERT_EQ(hosts.status, 0) << hosts.err;
  std::map<std::string, int> ranks_per_host;
  std::istringstream lines(hosts.out);
  for (std::string line; std::getline(lines, line);) ++ranks_per_host[line];
  ASSERT_EQ(ranks_per_host.size(), 2u) << hosts.out;
  for (const auto& [host, ranks] : ranks_per_host) EXPECT_EQ(ranks, 2) << host;

  const std::string job = "--config tests/fixtures/train_tiny.yaml --set parallel.zero_stage=3 --set logging.progress=off ";
  const auto cluster = run_script(dir, "timeout 300 launch/netns_cluster.sh 2 \"$QTRAIN_BIN\" " + job +
                                           "--set run.output_dir=" + (dir / "cluster").string());
  ASSERT_EQ(cluster.status, 0) << cluster.err;
  const auto local = testing::run_tool(dir, "qtrain", job + "--set run.output_dir=" + (dir / "local").string(),
                                       testing::mpirun(4));
  ASSERT_EQ(local.status, 0) << local.err;
  const auto a = testing::step_records(dir / "cluster"), b = testing::step_records(dir / "local");
  ASSERT_EQ(a.size(), 8u);
  ASSERT_EQ(b.size(), 8u);
  for (const auto& [step, record] : a) EXPECT_EQ(record["loss"].get<double>(), b.at(step)["loss"].get<double>()) << step;
  const auto state = testing::read_text(dir / "cluster/checkpoints/step_00000008/trainer_state.json");
  EXPECT_NE(state.find("\"world_size\": 4"), std::string::npos) << state.substr(0, 300);
}

}  // namespace
}  // namespace qtrain
