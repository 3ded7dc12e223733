// The built qtrain on tests/fixtures/train_tiny.yaml: data parallelism is exact (1 rank
// with accumulation k = k ranks), a run killed with SIGKILL at a random step resumes to the
// very same per-step losses, SIGTERM checkpoints and exits, NaN steps are skipped, and
// bad set-ups exit with status 2; ZeRO-1 (parallel.zero_stage 1) matches the replicated
// optimizer, resumes exactly, and its checkpoints resume with any rank count and stage.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "common/compat.h"
#include "model/hf_checkpoint.h"
#include "model/safetensors.h"
#include "trainer/checkpoint.h"
#include "tests/test_util.h"
#include "tests/trainer/checkpoint_resume.h"

namespace qtrain {
namespace {

namespace fs = std::filesystem;
using testing::run_tool;

const std::string kConfig = "--config tests/fixtures/train_tiny.yaml ";

int64_t count_lines(const fs::path& path) {
  std::ifstream in(path);
  return std::count(std::istreambuf_iterator<char>(in), {}, '\n');
}

// Starts `command` in its own process group; returns the group id.
pid_t start_group(const std::string& command) {
  const pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  setpgid(pid, pid);
  return pid;
}

// Waits until the run has logged `lines` metric lines; false if the process ended first.
bool wait_for_lines(pid_t pid, const fs::path& metrics, int64_t lines) {
  for (int i = 0; i < 6000; ++i) {
    if (count_lines(metrics) >= lines) return true;
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

// Every descendant of `root`, from /proc. mpirun starts its ranks in process groups of their
// own, so a signal to the launcher's group misses them, and they run on for up to a second.
std::vector<pid_t> descendants(pid_t root) {
  std::multimap<pid_t, pid_t> children;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const auto name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(entry.path() / "stat");
    std::string stat;
    std::getline(in, stat);
    const auto close = stat.rfind(')');  // the command name may hold spaces
    if (close == std::string::npos) continue;
    char state = 0;
    int parent = 0;
    if (std::sscanf(stat.c_str() + close + 1, " %c %d", &state, &parent) == 2)
      children.emplace(parent, static_cast<pid_t>(std::stoi(name)));
  }
  std::vector<pid_t> out;
  std::vector<pid_t> todo = {root};
  while (!todo.empty()) {
    const pid_t pid = todo.back();
    todo.pop_back();
    for (auto [it, end] = children.equal_range(pid); it != end; ++it) {
      out.push_back(it->second);
      todo.push_back(it->second);
    }
  }
  return out;
}

int wait_status(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string qtrain_command(const fs::path& dir, const std::string& args, int ranks) {
  return "cd '" + testing::source_dir().string() + "' && " + testing::mpirun(ranks) + " '" +
         (testing::binary_dir() / "qtrain").string() + "' " + kConfig + args + " > '" + (dir / "out").string() +
         "' 2> '" + (dir / "err").string() + "'";
}

TEST(QtrainTraining, OneRankWithAccumulationMatchesTwoRanks) {
  const auto dir = testing::scratch_dir();
  const auto one = run_tool(dir, "qtrain", kConfig + "--set run.output_dir=" + (dir / "one").string());
  ASSERT_EQ(one.status, 0) << one.err;
  const auto two = run_tool(dir, "qtrain", kConfig + "--set run.output_dir=" + (dir / "two").string(), testing::mpirun(2));
  ASSERT_EQ(two.status, 0) << two.err;
  const auto a = testing::step_records(dir / "one"), b = testing::step_records(dir / "two");
  ASSERT_EQ(a.size(), 8u);
  ASSERT_EQ(b.size(), 8u);
  for (const auto& [step, record] : a) {
    const double x = record["loss"], y = b.at(step)["loss"];
    EXPECT_NEAR(x, y, 1e-5 * std::abs(x)) << "step " << step;
    EXPECT_NEAR(record["grad_norm"].get<double>(), b.at(step)["grad_norm"].get<double>(), 1e-4) << "step " << step;
  }
  EXPECT_LT(a.at(8)["loss"].get<double>(), a.at(1)["loss"].get<double>());  // it learns
  EXPECT_GT(b.at(1)["buckets_overlapped"].get<int>(), 0);  // all-reduce started inside backward
  EXPECT_FALSE(fs::is_empty(dir / "two/tensorboard"));
}

// A 2-rank run killed with SIGKILL after a random number of logged steps, then resumed,
// logs the very losses and gradient norms of an uninterrupted run.
void expect_sigkill_then_resume_is_exact(const std::string& extra) {
  const auto dir = testing::scratch_dir();
  const std::string run = "--set training.steps=24 --set checkpoint.every_steps=3 --set data.seq_len=64 "
                          "--set data.micro_batch_size=4 --set data.global_batch_size=16 " + extra;
  const auto full = run_tool(dir, "qtrain", kConfig + run + "--set run.output_dir=" + (dir / "full").string(),
                             testing::mpirun(2));
  ASSERT_EQ(full.status, 0) << full.err;
  const unsigned seed = std::random_device{}();
  const int64_t kill_after = 4 + static_cast<int64_t>(seed % 16);  // logged steps before the kill
  SCOPED_TRACE("killed after " + std::to_string(kill_after) + " logged steps (seed " + std::to_string(seed) + ")");
  const auto resumed_dir = dir / "resumed";
  const pid_t group = start_group(qtrain_command(dir, run + "--set run.output_dir=" + resumed_dir.string(), 2));
  ASSERT_TRUE(wait_for_lines(group, resumed_dir / "metrics.jsonl", kill_after)) << testing::read_text(dir / "err");
  for (const pid_t pid : descendants(group)) kill(pid, SIGKILL);  // the ranks too, at once (a crashed node)
  kill(-group, SIGKILL);
  wait_status(group);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let the killed ranks go
  EXPECT_LT(testing::step_records(resumed_dir).size(), 24u);
  const auto again = run_tool(dir, "qtrain", kConfig + run + "--set run.output_dir=" + resumed_dir.string() +
                                                 " --set checkpoint.resume=auto",
                              testing::mpirun(2));
  ASSERT_EQ(again.status, 0) << again.err;
  const auto a = testing::step_records(dir / "full"), b = testing::step_records(resumed_dir);
  ASSERT_EQ(b.size(), 24u);
  for (const auto& [step, record] : a) {
    EXPECT_EQ(record["loss"].get<double>(), b.at(step)["loss"].get<double>()) << "step " << step;
    EXPECT_EQ(record["grad_norm"].get<double>(), b.at(step)["grad_norm"].get<double>()) << "step " << step;
  }
}

TEST(QtrainTraining, SigkillAtARandomStepThenResumeGivesTheSameLosses) { expect_sigkill_then_resume_is_exact(""); }

TEST(QtrainTraining, ZeroStage1SigkillAtARandomStepThenResumeGivesTheSameLosses) {
  expect_sigkill_then_resume_is_exact("--set parallel.zero_stage=1 ");
}

TEST(QtrainTraining, ZeroStage2SigkillAtARandomStepThenResumeGivesTheSameLosses) {
  expect_sigkill_then_resume_is_exact("--set parallel.zero_stage=2 ");
}

TEST(QtrainTraining, ZeroStage3SigkillAtARandomStepThenResumeGivesTheSameLosses) {
  expect_sigkill_then_resume_is_exact("--set parallel.zero_stage=3 --set training.activation_checkpointing=true ");
}

// ZeRO-1 against the replicated optimizer on 2 ranks, over 16 steps (the moments carry 8+
// steps of history, weight decay and clipping on). The updates are the same element-wise
// fp32 arithmetic and a 2-rank reduce-scatter adds the same two numbers as the all-reduce;
// only the global gradient norm is summed differently (fp64 sum of the ranks' squared
// segment norms, against one fp32 norm), which moves the clipping factor in its last bits
// (measured: at most 5.7e-8 relative over the 16 losses). 1e-6 relative is far tighter
// than a sharding error (parameters not all-gathered: the grad norm is off by 6e-3 at step 2).
TEST(QtrainTraining, ZeroStage1MatchesZeroStage0OnTwoRanks) {
  const auto dir = testing::scratch_dir();
  const std::string run = "--set training.steps=16 --set checkpoint.every_steps=16 ";
  const auto zero0 = run_tool(dir, "qtrain", kConfig + run + "--set run.output_dir=" + (dir / "zero0").string(),
                              testing::mpirun(2));
  ASSERT_EQ(zero0.status, 0) << zero0.err;
  const auto zero1 = run_tool(dir, "qtrain", kConfig + run + "--set parallel.zero_stage=1 --set run.output_dir=" +
                                                 (dir / "zero1").string(),
                              testing::mpirun(2));
  ASSERT_EQ(zero1.status, 0) << zero1.err;
  const auto a = testing::step_records(dir / "zero0"), b = testing::step_records(dir / "zero1");
  ASSERT_EQ(a.size(), 16u);
  ASSERT_EQ(b.size(), 16u);
  double worst = 0;
  for (const auto& [step, record] : a) {
    const double x = record["loss"], y = b.at(step)["loss"];
    worst = std::max(worst, std::abs(x - y) / std::abs(x));
    EXPECT_NEAR(x, y, 1e-6 * std::abs(x)) << "step " << step;
    EXPECT_NEAR(record["grad_norm"].get<double>(), b.at(step)["grad_norm"].get<double>(),
                1e-5 * record["grad_norm"].get<double>())
        << "step " << step;
  }
  std::printf("largest relative loss difference, ZeRO-1 vs 0: %.3g\n", worst);
  EXPECT_LT(a.at(16)["loss"].get<double>(), a.at(1)["loss"].get<double>());  // it learns
  EXPECT_GT(b.at(1)["buckets_overlapped"].get<int>(), 0);  // reduce-scatter started inside backward
  // The checkpoints hold the same moments: ZeRO-1's two shards (each rank wrote its own
  // part) make up the whole of every tensor.
  const auto checkpoint0 = trainer::LoadedCheckpoint::open((dir / "zero0/checkpoints/step_00000016").string());
  const auto checkpoint1 = trainer::LoadedCheckpoint::open((dir / "zero1/checkpoints/step_00000016").string());
  EXPECT_TRUE(fs::exists(dir / "zero1/checkpoints/step_00000016/shard-00001-of-00002.safetensors"));
  const auto moments0 = checkpoint0.tensors("optimizer"), moments1 = checkpoint1.tensors("optimizer");
  ASSERT_EQ(moments0.size(), moments1.size());
  for (size_t i = 0; i < moments0.size(); ++i) {
    const auto& [name, x] = moments0[i];
    const auto& y = moments1[i].second;
    ASSERT_EQ(name, moments1[i].first);
    ASSERT_EQ(x.sizes(), y.sizes()) << name;
    EXPECT_TRUE(torch::allclose(x, y, 1e-3, 1e-9)) << name << ": " << (x - y).abs().max().item<double>();
    EXPECT_GT(y.abs().max().item<double>(), 0.0) << name;  // every part was written, none left zero
  }
}

// A checkpoint written by 2 ranks with ZeRO-1 (each rank its own part): 1 rank (with
// either stage) and 2 ranks without sharding continue from it to the losses of the 2-rank
// ZeRO-1 run (up to the summation order of 1 rank vs 2, as OneRankWithAccumulationMatchesTwoRanks,
// and of the gradient norm, ZeroStage1MatchesZeroStage0OnTwoRanks); 2 ranks with ZeRO-1 to
// the very same losses.
TEST(QtrainTraining, ZeroStage1CheckpointResumesWithOtherRankCountsAndStages) {
  testing::expect_checkpoint_resumes(kConfig, 1, {{"one_zero0", 1, 0}, {"one_zero1", 1, 1}, {"two_zero0", 2, 0},
                                                  {"two_zero1", 2, 1}});
}

// resume: auto after the newest checkpoints were damaged (step 8's rank-1 shard truncated, step
// 6's manifest lost): the run says what it skipped, continues from step 4, the newest that
// verifies, to the very losses of the undamaged run, and writes steps 6 and 8 anew over the
// damaged folders.
TEST(QtrainTraining, ResumeAutoSkipsDamagedCheckpoints) {
  const auto dir = testing::scratch_dir();
  const std::string run = "--set checkpoint.keep_last=4 --set run.output_dir=" + (dir / "run").string() + " ";
  const auto first = run_tool(dir, "qtrain", kConfig + run, testing::mpirun(2));
  ASSERT_EQ(first.status, 0) << first.err;
  const auto reference = testing::step_records(dir / "run");
  const auto ck = dir / "run/checkpoints";
  fs::resize_file(ck / "step_00000008/shard-00001-of-00002.safetensors", 1000);
  fs::remove(ck / "step_00000006/manifest.json");
  const auto again = run_tool(dir, "qtrain", kConfig + run + "--set checkpoint.resume=auto", testing::mpirun(2));
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_NE(again.err.find("skipping checkpoints that do not verify"), std::string::npos) << again.err;
  EXPECT_NE(again.err.find("resumed from " + (ck / "step_00000004").string() + " at step 4"), std::string::npos) << again.err;
  const auto resumed = testing::step_records(dir / "run");
  for (int64_t step = 5; step <= 8; ++step)
    EXPECT_EQ(resumed.at(step)["loss"].get<double>(), reference.at(step)["loss"].get<double>()) << "step " << step;
  EXPECT_NO_THROW(trainer::LoadedCheckpoint::open((ck / "step_00000008").string()));
  EXPECT_NO_THROW(trainer::LoadedCheckpoint::open((ck / "step_00000006").string()));
}

// The disk fills up during a checkpoint (run.output_dir on a 600 KiB tmpfs: the checkpoint of
// step 2 fits, step 4's does not): the job exits with status 2 and one error naming the file
// and "No space left on device", the checkpoint of step 2 still verifies and `latest` names
// it; once there is room, resume: auto continues from step 2 to the losses of a run that
// never failed. Needs a tmpfs mount (root); skipped with the reason where mount is refused.
TEST(QtrainTraining, DiskFullDuringACheckpointLosesNothing) {
  const auto dir = testing::scratch_dir();
  const auto mnt = dir / "small";
  fs::create_directories(mnt);
  if (std::system(("mount -t tmpfs -o size=600k tmpfs '" + mnt.string() + "' 2>/dev/null").c_str()) != 0)
    GTEST_SKIP() << "cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)";
  struct Unmount {
    fs::path at;
    ~Unmount() { std::system(("umount '" + at.string() + "'").c_str()); }
  } unmount{mnt};
  const std::string run = kConfig + "--set logging.tensorboard=false --set run.output_dir=" + (mnt / "run").string() + " ";
  const auto full = run_tool(dir, "qtrain", run);
  EXPECT_EQ(full.status, 2) << full.err;
  EXPECT_NE(full.err.find("No space left on device"), std::string::npos) << full.err;
  EXPECT_NE(full.err.find("step_00000004"), std::string::npos) << full.err;
  size_t errors = 0;  // one error line (progress lines may come before it on a slow machine)
  for (auto at = full.err.find("qtrain: error:"); at != std::string::npos; at = full.err.find("qtrain: error:", at + 1))
    ++errors;
  EXPECT_EQ(errors, 1u) << full.err;
  const auto ck = mnt / "run/checkpoints";
  EXPECT_EQ(testing::read_text(ck / "latest").rfind("step_00000002", 0), 0u);
  EXPECT_NO_THROW(trainer::LoadedCheckpoint::open((ck / "step_00000002").string()));
  ASSERT_EQ(std::system(("mount -o remount,size=16m '" + mnt.string() + "'").c_str()), 0);
  const auto resumed = run_tool(dir, "qtrain", run + "--set checkpoint.resume=auto");
  ASSERT_EQ(resumed.status, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("resumed from " + (ck / "step_00000002").string() + " at step 2"), std::string::npos)
      << resumed.err;
  const auto reference_run = run_tool(dir, "qtrain", kConfig + "--set logging.tensorboard=false --set run.output_dir=" +
                                                         (dir / "reference").string());
  ASSERT_EQ(reference_run.status, 0) << reference_run.err;
  const auto a = testing::step_records(dir / "reference"), b = testing::step_records(mnt / "run");
  ASSERT_EQ(b.size(), 8u);
  for (int64_t step = 1; step <= 8; ++step)
    EXPECT_EQ(b.at(step)["loss"].get<double>(), a.at(step)["loss"].get<double>()) << "step " << step;
}

// SIGTERM goes to mpirun, which forwards it to the ranks (as `scancel` or a preempting
// scheduler does); each rank checkpoints and exits 128 + 15, so mpirun exits non-zero.
TEST(QtrainTraining, SigtermSavesACheckpointAndExits) {
  const auto dir = testing::scratch_dir();
  const auto out = dir / "run";
  const pid_t group = start_group(qtrain_command(
      dir, "--set training.steps=400 --set checkpoint.every_steps=1000 --set run.output_dir=" + out.string(), 2));
  ASSERT_TRUE(wait_for_lines(group, out / "metrics.jsonl", 3)) << testing::read_text(dir / "err");
  ASSERT_EQ(std::system(("pkill -TERM -g " + std::to_string(group) + " -x mpirun").c_str()), 0);
  EXPECT_NE(wait_status(group), 0) << testing::read_text(dir / "err");
  const auto latest = testing::read_text(out / "checkpoints/latest");
  EXPECT_EQ(latest.rfind("step_", 0), 0u) << latest;
  EXPECT_NE(testing::read_text(dir / "err").find("stopped by signal 15"), std::string::npos);
}

TEST(QtrainTraining, NanStepsAreSkippedAndTooManyEndTheRun) {
  const auto dir = testing::scratch_dir();
  const auto skipped = run_tool(dir, "qtrain", kConfig + "--set run.output_dir=" + (dir / "a").string(),
                                "export QTRAIN_INJECT_NAN_STEPS=3,5; " + testing::mpirun(2));
  ASSERT_EQ(skipped.status, 0) << skipped.err;
  const auto a = testing::step_records(dir / "a");
  EXPECT_TRUE(a.at(3).value("skipped", false));
  EXPECT_TRUE(a.at(5).value("skipped", false));
  EXPECT_FALSE(a.at(4).value("skipped", false));
  EXPECT_EQ(a.at(8)["skipped_steps"], 2);
  EXPECT_NE(skipped.err.find("step 3 skipped"), std::string::npos);
  const auto aborted = run_tool(dir, "qtrain",
                                kConfig + "--set training.max_skipped_steps=1 --set run.output_dir=" + (dir / "b").string(),
                                "QTRAIN_INJECT_NAN_STEPS=3,5");
  EXPECT_EQ(aborted.status, 2);
  EXPECT_NE(aborted.err.find("key 'training.max_skipped_steps': 2 steps had a non-finite loss or gradient"),
            std::string::npos)
      << aborted.err;
  // The checkpoint written before the storm (step 4) is intact and is the one resume takes.
  const auto ck = dir / "b/checkpoints";
  EXPECT_EQ(testing::read_text(ck / "latest").rfind("step_00000004", 0), 0u) << testing::read_text(ck / "latest");
  EXPECT_NO_THROW(trainer::LoadedCheckpoint::open((ck / "step_00000004").string()));
}

// A run whose every step is skipped as non-finite ends with status 2 (it exited 0 having
// learned nothing; issue 25), even under training.max_skipped_steps.
TEST(QtrainTraining, ARunWhoseEveryStepIsSkippedFails) {
  const auto dir = testing::scratch_dir();
  const auto run = run_tool(dir, "qtrain",
                            kConfig + "--set training.steps=2 --set run.output_dir=" + (dir / "a").string(),
                            "QTRAIN_INJECT_NAN_STEPS=1,2");
  EXPECT_EQ(run.status, 2) << run.err;
  EXPECT_NE(run.err.find("key 'training.max_skipped_steps': every one of the 2 steps of this run had a non-finite "
                         "loss or gradient"),
            std::string::npos)
      << run.err;
}

// Resuming with a changed data.seq_len, data.global_batch_size or run.seed would read other
// samples than the interrupted run (issue 25: accepted silently); micro_batch_size may change.
TEST(QtrainTraining, ResumeRefusesAChangedSampleOrder) {
  const auto dir = testing::scratch_dir();
  const auto out = "--set run.output_dir=" + (dir / "run").string() + " --set checkpoint.resume=auto ";
  ASSERT_EQ(run_tool(dir, "qtrain", kConfig + out + "--set training.steps=2").status, 0);
  for (const std::string& change : {"data.seq_len=32", "data.global_batch_size=4", "run.seed=8"}) {
    const auto resumed = run_tool(dir, "qtrain", kConfig + out + "--set training.steps=4 --set " + change);
    const auto key = change.substr(0, change.find('='));
    EXPECT_EQ(resumed.status, 2) << change << resumed.err;
    EXPECT_NE(resumed.err.find("key '" + key + "': the run resumed from "), std::string::npos) << resumed.err;
  }
  const auto accumulated = run_tool(dir, "qtrain", kConfig + out + "--set training.steps=4 --set data.micro_batch_size=1");
  EXPECT_EQ(accumulated.status, 0) << accumulated.err;
  EXPECT_NE(accumulated.err.find("resumed from"), std::string::npos) << accumulated.err;
  // Naming the checkpoint folder is a deliberate continuation (a curriculum): said, not refused.
  const auto curriculum = run_tool(dir, "qtrain",
                                   kConfig + "--set run.output_dir=" + (dir / "longer").string() +
                                       " --set checkpoint.resume=" + (dir / "run/checkpoints/step_00000002").string() +
                                       " --set training.steps=4 --set data.seq_len=32");
  EXPECT_EQ(curriculum.status, 0) << curriculum.err;
  EXPECT_NE(curriculum.err.find("was made with data.seq_len = 16, this run has 32: the sample order changes"),
            std::string::npos)
      << curriculum.err;
}

// Issue 24: output folders the job cannot use, and a run.name that JSON cannot hold, end
// with status 2 and one line naming the key before any work (they were "internal error:
// filesystem error" / "type_error.316", status 1, after the models had loaded or later).
TEST(QtrainTraining, UnusableOutputFoldersAndNonUtf8NamesExitWithStatus2) {
  const auto dir = testing::scratch_dir();
  std::ofstream(dir / "a_file") << "x";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--set run.output_dir=", "key 'run.output_dir': "},
      {"--set run.output_dir=" + (dir / "a_file").string(), "key 'run.output_dir': exists and is not a folder"},
      {"--set run.output_dir=/proc/qtrain-run", "key 'run.output_dir': lies in /proc"},
      {"--set run.output_dir=" + (dir / "run").string() + " --set 'run.name=tiny\xff\xfe'",
       "key 'run.name': the text is not valid UTF-8"}};
  for (const auto& [args, message] : cases) {
    const auto run = run_tool(dir, "qtrain", kConfig + args);
    EXPECT_EQ(run.status, 2) << args << run.err;
    EXPECT_NE(run.err.find(message), std::string::npos) << run.err;
    EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1) << run.err;
  }
  EXPECT_EQ(testing::read_text(dir / "a_file"), "x");
}

// A teacher whose weights hold NaN (issue 24): status 2 naming the teacher's folder (the
// error said only "the model's loss is not finite").
TEST(QtrainTraining, ATeacherWithNanWeightsIsNamed) {
  const auto dir = testing::scratch_dir();
  const auto teacher = dir / "nan_teacher";
  fs::copy(testing::fixture("llama_gqa_llama3"), teacher, fs::copy_options::recursive);
  auto model = model::load_causal_lm(teacher.string());
  model::NamedTensors tensors;
  for (auto& [name, t] : model::hf_state(*model)) tensors.emplace_back(name, t.clone());
  for (auto& [name, t] : tensors)
    if (name == "model.layers.0.mlp.down_proj.weight") t[0][0] = std::numeric_limits<float>::quiet_NaN();
  for (const auto& entry : fs::directory_iterator(teacher))
    if (entry.path().extension() == ".safetensors" || entry.path().filename() == "model.safetensors.index.json")
      fs::remove(entry.path());
  model::save_safetensors((teacher / "model.safetensors").string(), tensors);
  const auto run = run_tool(dir, "qtrain", kConfig + "--set model.teacher=" + teacher.string() +
                                                " --set run.output_dir=" + (dir / "run").string());
  EXPECT_EQ(run.status, 2) << run.err;
  EXPECT_NE(run.err.find("nan_teacher: the model's loss is not finite"), std::string::npos) << run.err;
}

TEST(QtrainTraining, AFailingOrHungRankEndsTheWholeJobQuickly) {
  const auto dir = testing::scratch_dir();
  const auto start = std::chrono::steady_clock::now();
  const auto failed = run_tool(dir, "qtrain", kConfig + "--set run.output_dir=" + (dir / "a").string(),
                               "export QTRAIN_INJECT_FAIL=1:3; " + testing::mpirun(2));
  EXPECT_NE(failed.status, 0);
  EXPECT_NE(failed.err.find("injected failure at step 3 [rank 1]"), std::string::npos) << failed.err;
  const auto hung = run_tool(dir, "qtrain",
                             kConfig + "--set parallel.timeout_s=3 --set training.steps=50 --set run.output_dir=" +
                                 (dir / "b").string(),
                             "export QTRAIN_INJECT_HANG=1:4; " + testing::mpirun(2));
  EXPECT_NE(hung.status, 0);
  EXPECT_NE(hung.err.find("made no progress for"), std::string::npos) << hung.err;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 60) << "the job must end within a bounded time";
}

// A rank that stops during start-up (step 0: before the first collective; issue 25): the
// other rank waits in that collective, and its watchdog, which exists from the start now,
// ends the job within parallel.timeout_s (it hung for ever).
TEST(QtrainTraining, ARankThatStopsDuringStartUpEndsTheJobQuickly) {
  const auto dir = testing::scratch_dir();
  const auto start = std::chrono::steady_clock::now();
  const auto hung = run_tool(dir, "qtrain",
                             kConfig + "--set parallel.timeout_s=3 --set run.output_dir=" + (dir / "a").string(),
                             "export QTRAIN_INJECT_HANG=1:0; " + testing::mpirun(2));
  EXPECT_NE(hung.status, 0);
  EXPECT_NE(hung.err.find("made no progress for"), std::string::npos) << hung.err;
  EXPECT_NE(hung.err.find("during start-up: "), std::string::npos) << hung.err;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 60) << "the job must end within a bounded time";
}

TEST(QtrainTraining, BadSetupsExitWithStatus2) {
  const auto dir = testing::scratch_dir();
  const auto out = "--set run.output_dir=" + (dir / "run").string() + " ";
  ASSERT_EQ(run_tool(dir, "qtrain", kConfig + out + "--set training.steps=2").status, 0);
  const auto again = run_tool(dir, "qtrain", kConfig + out + "--set training.steps=2");
  EXPECT_EQ(again.status, 2);
  EXPECT_NE(again.err.find("key 'checkpoint.resume': this run.output_dir already holds checkpoints"), std::string::npos)
      << again.err;
  const auto vocab = run_tool(dir, "qtrain", kConfig + "--set run.output_dir=" + (dir / "v").string() +
                                                 " --set 'model.student_overrides=[vocab_size=300]'");
  EXPECT_EQ(vocab.status, 2);
  EXPECT_NE(vocab.err.find("key 'vocab_size': student vocab_size 300 differs from the teacher's"), std::string::npos)
      << vocab.err;
  const auto ranks = run_tool(dir, "qtrain", kConfig + "--set run.output_dir=" + (dir / "r").string(), testing::mpirun(3));
  EXPECT_EQ(ranks.status, 2);
  EXPECT_NE(ranks.err.find("not a multiple of micro_batch_size x ranks"), std::string::npos) << ranks.err;
  const auto offload = run_tool(dir, "qtrain", kConfig + "--set run.output_dir=" + (dir / "o").string() +
                                                   " --set parallel.offload_optimizer=true --set parallel.zero_stage=1");
  EXPECT_EQ(offload.status, 2);
  EXPECT_NE(offload.err.find("key 'parallel.offload_optimizer'"), std::string::npos) << offload.err;
}

// checkpoint.enabled false (benchmarks): no checkpoint is written, not even the last, and the
// run trains exactly as one that saves them.
TEST(QtrainTraining, CheckpointsOffWritesNoneAndTrainsTheSame) {
  const auto dir = testing::scratch_dir();
  const auto on = run_tool(dir, "qtrain", kConfig + "--set run.output_dir=" + (dir / "on").string());
  ASSERT_EQ(on.status, 0) << on.err;
  const auto off = run_tool(dir, "qtrain", kConfig + "--set checkpoint.enabled=false --set run.output_dir=" +
                                               (dir / "off").string());
  ASSERT_EQ(off.status, 0) << off.err;
  EXPECT_TRUE(fs::exists(dir / "on/checkpoints/latest"));
  EXPECT_FALSE(fs::exists(dir / "off/checkpoints/latest"));
  const auto a = testing::step_records(dir / "on"), b = testing::step_records(dir / "off");
  ASSERT_EQ(a.size(), 8u);
  ASSERT_EQ(b.size(), a.size());
  for (const auto& [step, record] : a) EXPECT_EQ(record["loss"].get<double>(), b.at(step)["loss"].get<double>()) << step;
}

// logging.profile_step: with LibTorch 2.x the chosen step's Chrome trace is written under
// run.output_dir/profile/; a 1.x build has no profiler API and refuses the key (status 2).
TEST(QtrainTraining, ProfileStepWritesATraceOrIsRefused) {
  const auto dir = testing::scratch_dir();
  const auto run = run_tool(dir, "qtrain", kConfig + "--set logging.profile_step=3 --set run.output_dir=" +
                                               (dir / "run").string());
  if (!compat::profiler_available()) {
    EXPECT_EQ(run.status, 2);
    EXPECT_NE(run.err.find("key 'logging.profile_step'"), std::string::npos) << run.err;
    return;
  }
  ASSERT_EQ(run.status, 0) << run.err;
  const auto trace = dir / "run/profile/trace_steps_3-3.json";
  ASSERT_TRUE(fs::exists(trace));
  EXPECT_NE(testing::read_text(trace).find("traceEvents"), std::string::npos);
}

}  // namespace
}  // namespace qtrain

namespace qtrain {
namespace {

const std::string kQat =
    "--set \"quant.rules=[lm_head=none, 're:.*mlp\\..*=w4a16-g16', 're:.*self_attn\\..*=w8a8']\" ";

// QAT end to end: the run exports, the integer checkpoint's perplexity is printed next to
// the fake-quant student's and agrees within 0.5%, `qtrain export` of the last checkpoint
// writes the same bytes, and a run interrupted after a checkpoint resumes to the same losses
// (quantizer state included).
TEST(QtrainQat, ExportsComparesAndResumesExactly) {
  const auto dir = testing::scratch_dir();
  const auto full = run_tool(dir, "qtrain", kConfig + kQat + "--set run.output_dir=" + (dir / "full").string(),
                             testing::mpirun(2));
  ASSERT_EQ(full.status, 0) << full.err;
  const auto line = full.out.find("fake-quant student ");
  ASSERT_NE(line, std::string::npos) << full.out;
  double fake = 0, integer = 0;
  ASSERT_EQ(std::sscanf(full.out.c_str() + line, "fake-quant student %lf, exported integer checkpoint %lf", &fake, &integer), 2);
  EXPECT_NEAR(integer, fake, 0.005 * fake);
  const auto again = run_tool(dir, "qtrain",
                              "export --checkpoint " + (dir / "full/checkpoints/step_00000008").string() + " --output " +
                                  (dir / "again").string());
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_EQ(testing::read_text(dir / "again/model.safetensors"), testing::read_text(dir / "full/export/model.safetensors"));
  const auto broken = run_tool(dir, "qtrain", kConfig + kQat + "--set run.output_dir=" + (dir / "resumed").string(),
                               "export QTRAIN_INJECT_FAIL=0:6; " + testing::mpirun(2));
  EXPECT_NE(broken.status, 0);
  const auto resumed = run_tool(dir, "qtrain",
                                kConfig + kQat + "--set checkpoint.resume=auto --set run.output_dir=" + (dir / "resumed").string(),
                                testing::mpirun(2));
  ASSERT_EQ(resumed.status, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("resumed from"), std::string::npos);
  const auto a = testing::step_records(dir / "full"), b = testing::step_records(dir / "resumed");
  ASSERT_EQ(b.size(), 8u);
  for (const auto& [step, record] : a) EXPECT_EQ(record["loss"].get<double>(), b.at(step)["loss"].get<double>()) << step;
}

}  // namespace
}  // namespace qtrain
