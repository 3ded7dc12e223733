// ZeRO-2 and ZeRO-3 (parallel.zero_stage 2, 3; trainer/grad_sync.h, trainer/sharded_model.h)
// under mpirun on tests/fixtures/train_tiny.yaml, against the replicated run (stage 0):
// the same per-step losses and gradient norms over 16 steps at 1, 2 and 4 ranks, with and
// without activation checkpointing and with the teacher sharded too; QAT (w4a16 group-wise
// weights, w8a8 with static activation scales, an fp8 KV cache) trains and exports the same
// numbers, the stage-3 export streamed layer by layer into sharded files; a stage-3
// checkpoint resumes on other rank counts and stages.
// Tolerance: stage 2 and 3 add each micro-batch's gradients into the owned segments after
// its reduce-scatter instead of summing them in one buffer first, and the norm is summed
// over the ranks' segments (as ZeRO-1's): differences in the last bits of fp32, which 16
// AdamW steps carry to ~1e-7 relative in the losses. 1e-6 relative is far tighter than any
// sharding error (a segment not gathered, a gradient not reduced: 1e-3 or more).
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "model/hf_checkpoint.h"
#include "tests/test_util.h"
#include "tests/trainer/checkpoint_resume.h"

namespace qtrain {
namespace {

namespace fs = std::filesystem;
using testing::run_tool;

const std::string kConfig = "--config tests/fixtures/train_tiny.yaml ";

// The worst relative difference of losses (and grad norms) between two runs' records.
void expect_same_steps(const std::map<int64_t, nlohmann::json>& a, const std::map<int64_t, nlohmann::json>& b,
                       size_t steps, const std::string& what) {
  ASSERT_EQ(a.size(), steps) << what;
  ASSERT_EQ(b.size(), steps) << what;
  double worst = 0;
  for (const auto& [step, record] : a) {
    const double x = record["loss"], y = b.at(step)["loss"];
    worst = std::max(worst, std::abs(x - y) / std::abs(x));
    EXPECT_NEAR(x, y, 1e-6 * std::abs(x)) << what << ", step " << step;
    const double gx = record["grad_norm"], gy = b.at(step)["grad_norm"];
    EXPECT_NEAR(gx, gy, 1e-5 * gx) << what << ", step " << step;
  }
  std::printf("%s: largest relative loss difference against stage 0: %.3g\n", what.c_str(), worst);
}

// Two exports hold the same tensors: floating ones equal up to the last bits of their dtype
// (fp32 masters that differ by summation order, rounded to bf16 or not), integer ones within
// one step of the grid (a value that sat on a rounding boundary).
void expect_same_exports(const fs::path& a, const fs::path& b, const std::string& what) {
  const auto x_folder = model::HFCheckpoint::open(a.string());
  const auto y_folder = model::HFCheckpoint::open(b.string());
  ASSERT_EQ(x_folder.tensor_names(), y_folder.tensor_names()) << what;
  for (const auto& name : x_folder.tensor_names()) {
    const auto x = x_folder.tensor(name), y = y_folder.tensor(name);
    ASSERT_EQ(x.sizes(), y.sizes()) << what << ": " << name;
    ASSERT_EQ(x.scalar_type(), y.scalar_type()) << what << ": " << name;
    if (x.scalar_type() == torch::kFloat32)
      EXPECT_TRUE(torch::allclose(x, y, 1e-5, 1e-7)) << what << ": " << name;
    else if (x.is_floating_point())
      EXPECT_TRUE(torch::allclose(x.to(torch::kFloat32), y.to(torch::kFloat32), 1e-2, 1e-6)) << what << ": " << name;
    else {  // grid values: a tie broken the other way moves one entry by one step, rarely
      const auto steps = (x.to(torch::kInt64) - y.to(torch::kInt64)).abs();
      EXPECT_LE(steps.max().item<int64_t>(), 1) << what << ": " << name;
      EXPECT_LE(steps.gt(0).sum().item<int64_t>(), std::max<int64_t>(1, x.numel() / 1000)) << what << ": " << name;
    }
  }
}

// The perplexity qtrain measured of a run's export (metrics.jsonl).
double export_perplexity(const fs::path& run_dir) {
  std::ifstream in(run_dir / "metrics.jsonl");
  std::string line;
  double out = 0;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    if (j.value("kind", "") == "export") out = j["perplexity"];
  }
  return out;
}

class QtrainZeroRanks : public ::testing::TestWithParam<int> {};

TEST_P(QtrainZeroRanks, Stages2And3MatchStage0) {
  const int ranks = GetParam();
  const auto dir = testing::scratch_dir();
  const std::string run = "--set training.steps=16 --set checkpoint.every_steps=16 ";
  auto train = [&](const std::string& name, const std::string& extra) {
    const auto r = run_tool(dir, "qtrain", kConfig + run + extra + " --set run.output_dir=" + (dir / name).string(),
                            ranks > 1 ? testing::mpirun(ranks) : "");
    EXPECT_EQ(r.status, 0) << name << ": " << r.err;
    return testing::step_records(dir / name);
  };
  const auto zero0 = train("zero0", "");
  const std::vector<std::pair<std::string, std::string>> variants = {
      {"zero2", "--set parallel.zero_stage=2"},
      {"zero3", "--set parallel.zero_stage=3"},
      {"zero3_checkpointed", "--set parallel.zero_stage=3 --set training.activation_checkpointing=true"},
      {"zero3_full_teacher", "--set parallel.zero_stage=3 --set parallel.shard_teacher=false"},
      {"zero3_offload", "--set parallel.zero_stage=3 --set parallel.offload_optimizer=true"},
      {"zero0_checkpointed", "--set training.activation_checkpointing=true"}};
  for (const auto& [name, extra] : variants) {
    if (ranks != 2 && name != "zero2" && name != "zero3") continue;  // the variants once, at 2 ranks
    expect_same_steps(zero0, train(name, extra), 16, std::to_string(ranks) + " ranks, " + name);
  }
  EXPECT_LT(zero0.at(16)["loss"].get<double>(), zero0.at(1)["loss"].get<double>());  // it learns
}

INSTANTIATE_TEST_SUITE_P(Ranks, QtrainZeroRanks, ::testing::Values(1, 2, 4));

// The fake-quant student at stage 3 trains to the losses of stage 0 and exports the same
// integer checkpoint (its perplexity equal to stage 0's export within 1e-6 relative), with
// each PTQ initialisation: GPTQ, SmoothQuant and AWQ change each decoder layer's weights
// while that layer alone is gathered (the root for the whole time) and write them back into
// the owned segments.
class QtrainZeroQuantized : public ::testing::TestWithParam<std::string> {};

TEST_P(QtrainZeroQuantized, Stage3TrainsAndExportsAsStage0) {
  const auto dir = testing::scratch_dir();
  const std::string quant =
      "--set \"quant.rules=[lm_head=none, 're:.*mlp\\..*=w4a16-g16', 're:.*self_attn\\..*=w8a8']\" "
      "--set quant.kv_cache=fp8 --set training.steps=8 --set quant.method=" + GetParam() + " ";
  std::map<std::string, double> exported;
  std::map<std::string, std::map<int64_t, nlohmann::json>> steps;
  for (const std::string stage : {"0", "3"}) {
    const auto out = dir / ("zero" + stage);
    // Stage 3 streams its export layer by layer into 20 KiB shards.
    const std::string shards = stage == "3" ? "--set run.export_shard_mb=0.02 " : "";
    const auto r = run_tool(dir, "qtrain", kConfig + quant + shards + "--set parallel.zero_stage=" + stage +
                                               " --set run.output_dir=" + out.string(),
                            testing::mpirun(2));
    ASSERT_EQ(r.status, 0) << r.err;
    const auto line = r.out.find("exported integer checkpoint ");
    ASSERT_NE(line, std::string::npos) << r.out;
    ASSERT_EQ(std::sscanf(r.out.c_str() + line, "exported integer checkpoint %lf", &exported[stage]), 1);
    steps[stage] = testing::step_records(out);
  }
  expect_same_steps(steps["0"], steps["3"], 8, "w4a16 + w8a8 static + fp8 KV cache, " + GetParam() + ", stage 3");
  // A master weight that differs from stage 0's in its last fp32 bits may round to the
  // neighbouring grid point (seen: one int8 entry of an o_proj after AWQ, which moved the
  // perplexity by 3.1e-5 relative); expect_same_exports bounds such flips.
  EXPECT_NEAR(exported["3"], exported["0"], 1e-4 * exported["0"]);
  // The same tensors, in one file at stage 0 and in shards with an index at stage 3.
  EXPECT_TRUE(fs::exists(dir / "zero0/export/model.safetensors"));
  EXPECT_FALSE(fs::exists(dir / "zero3/export/model.safetensors"));
  const auto index = nlohmann::json::parse(testing::read_text(dir / "zero3/export/model.safetensors.index.json"));
  std::set<std::string> files;
  for (const auto& [name, file] : index["weight_map"].items()) files.insert(file.get<std::string>());
  EXPECT_GT(files.size(), 2u);
  expect_same_exports(dir / "zero0/export", dir / "zero3/export", "stage 3");
}

INSTANTIATE_TEST_SUITE_P(Methods, QtrainZeroQuantized, ::testing::Values("rtn", "gptq", "smoothquant", "awq"));

// The compressed students at 2 and 4 ranks, stages 2 and 3 against stage 0, over 16 steps:
// QAT (w4a16 group-wise MLP weights, w8a8 attention with static activation scales, an fp8
// KV cache), gradual structured pruning (taylor importance) exported as a smaller plain
// model, and pruning with w4a16 fake quantization exported as a smaller compressed-tensors
// model. The same losses within 1e-6 relative, and the same exports: tensors as
// expect_same_exports says, perplexities within 1e-6 relative. The exports are in fp32
// (quant.export_dtype): in bf16 a master weight that differs from stage 0's in its last fp32
// bits may round to the next bf16 value (seen: one element of model.norm.weight, which moved
// the perplexity by 1.3e-4 relative). At stage 3 both exports
// stream one decoder layer at a time (the pruned one compacts each layer while it is
// gathered), so no rank holds the whole student.
class QtrainZeroCompressed : public ::testing::TestWithParam<int> {};

TEST_P(QtrainZeroCompressed, Stages2And3TrainAndExportAsStage0) {
  const int ranks = GetParam();
  const auto dir = testing::scratch_dir();
  const std::string prune =
      "--set prune.mlp_sparsity=0.34 --set prune.heads_sparsity=0.5 --set prune.multiple=16 --set prune.importance=taylor "
      "--set prune.schedule=gradual --set prune.start_step=0 --set prune.end_step=6 --set prune.every_steps=2 ";
  const std::map<std::string, std::string> cases = {
      {"qat",
       "--set \"quant.rules=[lm_head=none, 're:.*mlp\\..*=w4a16-g16', 're:.*self_attn\\..*=w8a8']\" "
       "--set quant.kv_cache=fp8 "},
      {"pruned", prune},
      {"pruned_qat", prune + "--set \"quant.rules=[lm_head=none, 're:.*mlp\\..*=w4a16-g16']\" "}};
  for (const auto& [name, extra] : cases) {
    for (const std::string stage : {"0", "2", "3"}) {
      const auto out = dir / (name + "_zero" + stage);
      const auto r = run_tool(dir, "qtrain", kConfig + extra + "--set training.steps=16 --set checkpoint.enabled=false "
                                                 "--set run.export_shard_mb=0.02 --set quant.export_dtype=fp32 "
                                                 "--set parallel.zero_stage=" + stage +
                                                 " --set run.output_dir=" + out.string(),
                              testing::mpirun(ranks));
      ASSERT_EQ(r.status, 0) << name << ", stage " << stage << ": " << r.err;
      if (stage == "0") continue;
      const auto what = name + ", " + std::to_string(ranks) + " ranks, stage " + stage;
      const auto reference = dir / (name + "_zero0");
      expect_same_steps(testing::step_records(reference), testing::step_records(out), 16, what);
      const double ppl = export_perplexity(out), reference_ppl = export_perplexity(reference);
      ASSERT_GT(reference_ppl, 1.0) << what;
      EXPECT_NEAR(ppl, reference_ppl, 1e-6 * reference_ppl) << what;
      expect_same_exports(reference / "export", out / "export", what);
    }
  }
  // The pruned exports are smaller models (and the quantized one says so in its config).
  const auto pruned = nlohmann::json::parse(testing::read_text(dir / "pruned_zero3/export/config.json"));
  EXPECT_EQ(pruned["intermediate_size"], 32);
  EXPECT_EQ(pruned["num_key_value_heads"], 1);
  EXPECT_FALSE(pruned.contains("quantization_config"));
  const auto pruned_qat = nlohmann::json::parse(testing::read_text(dir / "pruned_qat_zero3/export/config.json"));
  EXPECT_EQ(pruned_qat["intermediate_size"], 32);
  EXPECT_TRUE(pruned_qat.contains("quantization_config"));
}

INSTANTIATE_TEST_SUITE_P(Ranks, QtrainZeroCompressed, ::testing::Values(2, 4));

// A checkpoint written by 2 ranks at stage 3 (each rank its own segments of the fp32 masters
// and moments, in its own shard file) resumes on 1 rank at stage 0, on 4 ranks at stage 2, and on 2 ranks at
// stage 3, where each rank reads back its own segments: the very same losses there, and
// elsewhere those of the 2-rank run up to the summation order of another rank count.
TEST(QtrainZero, Stage3CheckpointResumesWithOtherRankCountsAndStages) {
  testing::expect_checkpoint_resumes(kConfig, 3, {{"one_zero0", 1, 0}, {"four_zero2", 4, 2}, {"two_zero3", 2, 3}});
}

// Memory, measured (docs/trainer.md, Memory and ZeRO): a student copied from a teacher of
// about 100M parameters (36 layers of width 512; the fixtures' vocabulary of 256, so that
// the root unit stays small) at 4 ranks. Stage 3 keeps a quarter of the fp32 state and of
// the teacher, and no rank ever builds a whole model (they start as skeletons, their values
// streamed from the teacher's file into each rank's segments): the memory its job takes
// (the largest rank's peak resident set, VmHWM, which counts start-up, above the process's
// baseline before the models: LibTorch's libraries, 170 MB in the CPU build and 384 MB with
// CUDA's, the same at every stage) is at most 0.4x stage 0's. At both stages it agrees
// with the --dry-run estimate within 10%. The runs fix glibc's mmap threshold at 1 MiB
// (MALLOC_MMAP_THRESHOLD_): by default glibc raises it after large frees and serves blocks
// of a few MB from a heap that does not shrink, which adds 10-20% to the resident set at
// stage 3 and measures the allocator rather than the job (on a GPU the peak counts the
// tensors only).
TEST(QtrainZero, Stage3PeakMemoryAtFourRanksIsAtMostFourTenthsOfStage0) {
  const auto dir = testing::scratch_dir();
  {
    auto config = nlohmann::json::parse(testing::read_text("tests/fixtures/llama_gqa_llama3/config.json"));
    config.update({{"hidden_size", 512}, {"num_attention_heads", 8}, {"num_key_value_heads", 2}, {"head_dim", 64},
                   {"intermediate_size", 1408}, {"num_hidden_layers", 36}});
    model::CausalLM teacher(model::ModelConfig::from_json(config, "test"));
    ASSERT_NEAR(static_cast<double>(teacher->config().num_parameters()), 1.02e8, 0.01e8);
    model::init_weights(*teacher, 0.02, 5);
    model::SaveOptions options;
    options.dtype = torch::kBFloat16;
    model::save_causal_lm(*teacher, (dir / "teacher").string(), options);
  }
  std::map<std::string, nlohmann::json> memory;
  // "3q": stage 3 with w4a16 fake quantization; its start no longer gathers the whole
  // student (PTQ holds one decoder layer at a time; RTN here, as GPTQ's 36 calibration
  // rounds are slow on 2 cores). With activation checkpointing, and without it ("3qa"),
  // where the step keeps every layer's fake-quantized weight and the STE's range mask
  // (5 bytes per weight on the CPU; it was 13 before the mask was all the STE saved).
  for (const std::string stage : {"0", "3", "3q", "3qa"}) {
    const auto out = dir / ("zero" + stage);
    const std::string quant = stage.size() == 1 ? "" : " --set \"quant.rules=[lm_head=none, 're:.*=w4a16-g64']\""
                                                      " --set quant.method=rtn";
    const std::string checkpointing = stage == "3q" ? " --set training.activation_checkpointing=true" : "";
    const auto r = run_tool(dir, "qtrain",
                            kConfig + "--set model.teacher=" + (dir / "teacher").string() +
                                " --set model.student=copy --set distill.gamma=0 --set data.seq_len=64"
                                " --set data.micro_batch_size=1 --set data.global_batch_size=4 --set data.validation="
                                " --set training.steps=3 --set checkpoint.enabled=false --set parallel.zero_stage=" +
                                stage.substr(0, 1) + quant + checkpointing + " --set run.output_dir=" + out.string(),
                            "export MALLOC_MMAP_THRESHOLD_=1048576; " + testing::mpirun(4) + " -x MALLOC_MMAP_THRESHOLD_");
    ASSERT_EQ(r.status, 0) << r.err;
    memory[stage] = nlohmann::json::parse(testing::read_text(out / "results.json"))["memory"];
    const double peak = memory[stage]["peak_bytes"], baseline = memory[stage]["baseline_bytes"];
    const double estimate = memory[stage]["estimate_bytes"];
    std::printf("stage %s: peak %.0f MB per rank, baseline %.0f MB; above it %.0f MB, estimated %.0f MB (%.3fx)\n",
                stage.c_str(), peak / 1e6, baseline / 1e6, (peak - baseline) / 1e6, estimate / 1e6,
                (peak - baseline) / estimate);
    EXPECT_NEAR(peak - baseline, estimate, 0.1 * estimate) << "stage " << stage;
  }
  auto job_bytes = [&](const std::string& stage) {
    return memory[stage]["peak_bytes"].get<double>() - memory[stage]["baseline_bytes"].get<double>();
  };
  std::printf("stage 3 / stage 0: %.3f above the baseline, %.3f of the whole peaks\n", job_bytes("3") / job_bytes("0"),
              memory["3"]["peak_bytes"].get<double>() / memory["0"]["peak_bytes"].get<double>());
  EXPECT_LE(job_bytes("3"), 0.4 * job_bytes("0"));
}

}  // namespace
}  // namespace qtrain
