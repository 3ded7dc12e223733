// The launch scripts run the command lines they build: launch/slurm.sbatch with its launcher
// replaced by mpirun (no SLURM here), and launch/mpirun_multinode.sh with a one-node
// hostfile. Both resume by themselves when started again.
#include <gtest/gtest.h>

#include <fstream>

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

}  // namespace
}  // namespace qtrain
