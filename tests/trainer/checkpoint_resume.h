// Shared by the qtrain tests of ZeRO checkpoints (test_qtrain_training.cpp, test_qtrain_zero.cpp):
// a 2-rank job at one ZeRO stage writes checkpoints; its step-4 checkpoint resumes under other
// rank counts and stages, whose steps 5..8 must follow the writer's.
#pragma once
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/test_util.h"

namespace qtrain::testing {

struct ResumeJob {
  std::string name;
  int ranks = 1;
  int zero_stage = 0;
};

// The job at the writer's rank count and stage must log the very same losses (each rank
// restored its own segments); the others within 1e-5 relative (the summation order of
// another rank count, OneRankWithAccumulationMatchesTwoRanks, and of the gradient norm).
inline void expect_checkpoint_resumes(const std::string& config, int written_stage, const std::vector<ResumeJob>& jobs) {
  const auto dir = scratch_dir();
  const std::string run = config + "--set checkpoint.keep_last=4 ";
  const auto two = run_tool(dir, "qtrain", run + "--set parallel.zero_stage=" + std::to_string(written_stage) +
                                               " --set run.output_dir=" + (dir / "two").string(),
                            mpirun(2));
  ASSERT_EQ(two.status, 0) << two.err;
  const auto reference = step_records(dir / "two");
  const std::string from = "--set checkpoint.resume=" + (dir / "two/checkpoints/step_00000004").string() + " ";
  for (const auto& job : jobs) {
    SCOPED_TRACE(job.name);
    const auto resumed = run_tool(dir, "qtrain", run + from + "--set parallel.zero_stage=" + std::to_string(job.zero_stage) +
                                                     " --set run.output_dir=" + (dir / job.name).string(),
                                  job.ranks > 1 ? mpirun(job.ranks) : "");
    ASSERT_EQ(resumed.status, 0) << resumed.err;
    const auto b = step_records(dir / job.name);
    ASSERT_EQ(b.size(), 4u);  // steps 5..8
    const bool same_job = job.ranks == 2 && job.zero_stage == written_stage;
    for (const auto& [step, record] : b) {
      const double x = reference.at(step)["loss"], y = record["loss"];
      if (same_job)
        EXPECT_EQ(x, y) << "step " << step;
      else
        EXPECT_NEAR(x, y, 1e-5 * std::abs(x)) << "step " << step;
    }
  }
}

}  // namespace qtrain::testing
