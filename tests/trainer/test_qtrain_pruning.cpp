// The built qtrain with structured pruning on tests/fixtures/train_tiny.yaml, 2 ranks:
// pruning during distillation exports a physically smaller Hugging Face folder whose
// perplexity equals the masked student's; a run that fails after its last pruning step
// resumes from its checkpoint with the masks restored, to the same losses and the same
// exported bytes; with fake quantization on, the export is pruned and quantized at once;
// impossible targets exit with status 2; with ZeRO-1 the pruned moments are cleared on
// each rank's own segments, to the losses of the replicated optimizer.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "data/token_file.h"
#include "eval/perplexity.h"
#include "model/hf_checkpoint.h"
#include "model/safetensors.h"
#include "tests/test_util.h"
#include "trainer/checkpoint.h"

namespace qtrain {
namespace {

namespace fs = std::filesystem;
using testing::run_tool;

const std::string kConfig = "--config tests/fixtures/train_tiny.yaml ";
// The student (1 layer, intermediate 48, 4 heads in 2 KV groups) keeps 32 channels and 1 group.
const std::string kPrune =
    "--set prune.mlp_sparsity=0.34 --set prune.heads_sparsity=0.5 --set prune.multiple=16 "
    "--set prune.schedule=gradual --set prune.start_step=0 --set prune.end_step=4 --set prune.every_steps=2 ";

std::vector<nlohmann::json> records(const fs::path& run_dir) {
  std::vector<nlohmann::json> out;
  std::ifstream in(run_dir / "metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}

// step -> loss, the last record for each step (a resumed run logs the steps it redoes again).
std::map<int64_t, double> losses(const fs::path& run_dir) {
  std::map<int64_t, double> out;
  for (const auto& r : records(run_dir))
    if (r.contains("loss")) out[r["step"].get<int64_t>()] = r["loss"].get<double>();
  return out;
}

// The perplexities logged, in order: the final evaluation of the masked student, then the export's.
std::vector<double> perplexities(const fs::path& run_dir) {
  std::vector<double> out;
  for (const auto& r : records(run_dir))
    if (r.contains("perplexity")) out.push_back(r["perplexity"].get<double>());
  return out;
}


// The masked student's perplexity, the export's as qtrain measured it, and as measured here
// on the reloaded export (32 MLP channels kept): all equal to 1e-5.
void expect_export_equals_masked_student(const fs::path& run_dir) {
  const auto ppl = perplexities(run_dir);
  ASSERT_EQ(ppl.size(), 2u);
  EXPECT_NEAR(ppl[1], ppl[0], 1e-5 * ppl[0]);
  auto exported = model::load_causal_lm((run_dir / "export").string());
  EXPECT_EQ(exported->model->layers[0]->as<model::DecoderLayerImpl>()->mlp->up_proj->weight.size(0), 32);
  EXPECT_NEAR(testing::fixture_perplexity(*exported), ppl[0], 1e-5 * ppl[0]);
}

// Gradual pruning clears the AdamW moments of newly pruned weights; with ZeRO-1 to 3 each rank
// clears its own segments (AdamW::mask_state) and masks its own gradient segments
// (StudentPruning::mask_gradients); at ZeRO-3 the taylor importance passes run with both
// models gathered. The runs match the replicated optimizer's losses up to the summation
// order of the gradients and their norm (measured 3e-8 relative; a rank that kept stale
// moments or gradients of pruned weights would update them and move the loss far more).
TEST(QtrainPruning, ZeroStagesMatchTheReplicatedOptimizer) {
  const auto dir = testing::scratch_dir();
  const std::string run = kConfig + kPrune + "--set prune.importance=taylor --set prune.export_at_end=false ";
  for (const std::string stage : {"0", "1", "2", "3"}) {
    const auto r = run_tool(dir, "qtrain", run + "--set parallel.zero_stage=" + stage + " --set run.output_dir=" +
                                               (dir / ("zero" + stage)).string(),
                            testing::mpirun(2));
    ASSERT_EQ(r.status, 0) << r.err;
  }
  const auto a = losses(dir / "zero0");
  ASSERT_EQ(a.size(), 8u);
  for (const std::string stage : {"1", "2", "3"}) {
    const auto b = losses(dir / ("zero" + stage));
    ASSERT_EQ(b.size(), 8u);
    for (const auto& [step, loss] : a) EXPECT_NEAR(loss, b.at(step), 1e-6 * std::abs(loss)) << "stage " << stage << ", step " << step;
  }
}

// At ZeRO-3 the pruned export is written from the gathered student: it reloads to the masked
// student's perplexity, as without sharding.
TEST(QtrainPruning, ZeroStage3ExportsThePrunedStudent) {
  const auto dir = testing::scratch_dir();
  const auto r = run_tool(dir, "qtrain", kConfig + kPrune + "--set parallel.zero_stage=3 --set run.output_dir=" +
                                             (dir / "run").string(),
                          testing::mpirun(2));
  ASSERT_EQ(r.status, 0) << r.err;
  expect_export_equals_masked_student(dir / "run");
}

TEST(QtrainPruning, ExportsASmallerModelAndResumesWithItsMasks) {
  const auto dir = testing::scratch_dir();
  const std::string run = kConfig + kPrune + "--set prune.importance=taylor ";
  const auto full = run_tool(dir, "qtrain", run + "--set run.output_dir=" + (dir / "full").string(), testing::mpirun(2));
  ASSERT_EQ(full.status, 0) << full.err;
  EXPECT_NE(full.err.find("pruning after step 2: 32 of 48 MLP channels and 1 of 2 KV groups kept"), std::string::npos)
      << full.err;
  const auto config = nlohmann::json::parse(testing::read_text(dir / "full/export/config.json"));
  EXPECT_EQ(config["intermediate_size"], 32);
  EXPECT_EQ(config["num_attention_heads"], 2);
  EXPECT_EQ(config["num_key_value_heads"], 1);
  EXPECT_EQ(config["head_dim"], 16);
  EXPECT_EQ(config["hidden_size"], 32);
  EXPECT_FALSE(config.contains("quantization_config"));
  expect_export_equals_masked_student(dir / "full");
  // `qtrain export` of the last checkpoint removes the same structure, to the same bytes.
  const auto again = run_tool(dir, "qtrain", "export --checkpoint " + (dir / "full/checkpoints/step_00000008").string() +
                                               " --output " + (dir / "again").string());
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_EQ(testing::read_text(dir / "again/model.safetensors"), testing::read_text(dir / "full/export/model.safetensors"));

  // Fails at step 6, resumes from the checkpoint of step 4, after the last mask update.
  const auto resumed_dir = dir / "resumed";
  const auto broken = run_tool(dir, "qtrain", run + "--set run.output_dir=" + resumed_dir.string(),
                               "export QTRAIN_INJECT_FAIL=0:6; " + testing::mpirun(2));
  ASSERT_NE(broken.status, 0);
  const auto resumed = run_tool(dir, "qtrain", run + "--set checkpoint.resume=auto --set run.output_dir=" + resumed_dir.string(),
                                testing::mpirun(2));
  ASSERT_EQ(resumed.status, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("resumed from"), std::string::npos);
  EXPECT_EQ(resumed.err.find("pruning after step"), std::string::npos);  // the masks came from the checkpoint
  const auto a = losses(dir / "full"), b = losses(resumed_dir);
  ASSERT_EQ(b.size(), 8u);
  for (const auto& [step, loss] : a) EXPECT_EQ(loss, b.at(step)) << step;
  EXPECT_EQ(testing::read_text(resumed_dir / "export/model.safetensors"),
            testing::read_text(dir / "full/export/model.safetensors"));
  // In the last checkpoint, every weight that a mask prunes is exactly zero.
  const auto step8 = resumed_dir / "checkpoints/step_00000008";
  const auto checkpoint = trainer::LoadedCheckpoint::open(step8.string());
  const auto section = [&](const std::string& name) {
    std::map<std::string, torch::Tensor> out;
    for (const auto& [key, tensor] : checkpoint.tensors(name)) out[key] = tensor;
    return out;
  };
  auto masks = section("prune"), weights = section("model"), moments = section("optimizer");
  const auto channels = masks.at("layers.0.mlp_channels"), groups = masks.at("layers.0.kv_groups");
  EXPECT_EQ(channels.sum().item<int64_t>(), 32);
  EXPECT_EQ(groups.sum().item<int64_t>(), 1);
  const auto pruned = channels.logical_not().nonzero().reshape({-1});
  const std::string layer = "model.layers.0.";
  EXPECT_EQ(weights.at(layer + "mlp.gate_proj.weight").index_select(0, pruned).abs().sum().item<double>(), 0.0);
  EXPECT_EQ(weights.at(layer + "mlp.down_proj.weight").index_select(1, pruned).abs().sum().item<double>(), 0.0);
  EXPECT_GT(weights.at(layer + "mlp.down_proj.weight").abs().sum().item<double>(), 0.0);
  const auto pruned_kv = groups.logical_not().repeat_interleave(16).nonzero().reshape({-1});
  const auto pruned_q = groups.logical_not().repeat_interleave(32).nonzero().reshape({-1});
  EXPECT_EQ(weights.at(layer + "self_attn.k_proj.weight").index_select(0, pruned_kv).abs().sum().item<double>(), 0.0);
  EXPECT_EQ(weights.at(layer + "self_attn.o_proj.weight").index_select(1, pruned_q).abs().sum().item<double>(), 0.0);
  EXPECT_EQ(moments.at("exp_avg_sq." + layer + "mlp.up_proj.weight").index_select(0, pruned).abs().sum().item<double>(),
            0.0);
}

TEST(QtrainPruning, PrunesAndQuantizesInOneExport) {
  const auto dir = testing::scratch_dir();
  const std::string quant =
      "--set \"quant.rules=[lm_head=none, 're:.*mlp\\..*=w4a16-g16', 're:.*self_attn\\..*=w8a8']\" ";
  const auto full = run_tool(dir, "qtrain",
                             kConfig + kPrune + quant + "--set prune.schedule=oneshot --set run.output_dir=" +
                                 (dir / "full").string(),
                             testing::mpirun(2));
  ASSERT_EQ(full.status, 0) << full.err;
  EXPECT_NE(full.out.find(", quantized,"), std::string::npos) << full.out;
  const auto config = nlohmann::json::parse(testing::read_text(dir / "full/export/config.json"));
  EXPECT_EQ(config["intermediate_size"], 32);
  EXPECT_EQ(config["num_key_value_heads"], 1);
  EXPECT_EQ(config["quantization_config"]["quant_method"], "compressed-tensors");
  const auto ppl = perplexities(dir / "full");
  ASSERT_EQ(ppl.size(), 2u);
  EXPECT_NEAR(ppl[1], ppl[0], 0.005 * ppl[0]);  // integer vs fake quant, bf16 embeddings and norms
  auto st = model::SafetensorsFile::open((dir / "full/export/model.safetensors").string());
  EXPECT_EQ(st->tensor("model.layers.0.mlp.down_proj.weight_packed").size(0), 32);  // 32 rows (hidden) of
  EXPECT_EQ(st->tensor("model.layers.0.mlp.down_proj.weight_scale").size(1), 2);    // 32 columns = 2 groups

  // `qtrain export` of the last checkpoint writes the same pruned, quantized folder.
  const auto again = run_tool(dir, "qtrain", "export --checkpoint " + (dir / "full/checkpoints/step_00000008").string() +
                                               " --output " + (dir / "again").string());
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_NE(again.out.find("(pruned, quantized: "), std::string::npos) << again.out;
  EXPECT_EQ(testing::read_text(dir / "again/model.safetensors"), testing::read_text(dir / "full/export/model.safetensors"));
  EXPECT_EQ(nlohmann::json::parse(testing::read_text(dir / "again/config.json")), config);
}

TEST(QtrainPruning, ImpossibleTargetsExitWithStatus2) {
  const auto dir = testing::scratch_dir();
  const auto out = "--set run.output_dir=" + (dir / "run").string();
  const auto no_groups = run_tool(dir, "qtrain", kConfig + "--set prune.heads_sparsity=0.8 " + out);
  EXPECT_EQ(no_groups.status, 2);
  EXPECT_NE(no_groups.err.find("prune.heads_sparsity"), std::string::npos) << no_groups.err;
  EXPECT_NE(no_groups.err.find("keeps none of the 2 KV groups"), std::string::npos) << no_groups.err;
  const auto wide = run_tool(dir, "qtrain", kConfig + "--set prune.mlp_sparsity=0.25 --set prune.multiple=64 " + out);
  EXPECT_EQ(wide.status, 2);
  EXPECT_NE(wide.err.find("prune.multiple 64 exceeds the student's intermediate_size 48"), std::string::npos) << wide.err;
  const auto groups = run_tool(dir, "qtrain",
                               kConfig + "--set prune.mlp_sparsity=0.5 --set prune.multiple=8 "
                                         "--set \"quant.rules=[lm_head=none, 're:.*mlp\\..*=w4a16-g16']\" " + out);
  EXPECT_EQ(groups.status, 2);
  EXPECT_NE(groups.err.find("prune.multiple"), std::string::npos) << groups.err;
}


// Minitron's other axes on a 2-layer student (hidden 32): half the layers by the loss
// without them, a quarter of the hidden channels and half the KV groups by taylor scores,
// on the gradual schedule. The export has 1 layer and hidden_size 24, reloads to the masked
// student's perplexity (fp32: 1e-5), and `qtrain export` of the last checkpoint (the masks
// read back from it) writes the same bytes.
TEST(QtrainPruning, DepthAndHiddenSizeExportASmallerModel) {
  const auto dir = testing::scratch_dir();
  const std::string run =
      kConfig +
      "--set \"model.student_overrides=[num_hidden_layers=2, hidden_size=32, intermediate_size=48]\" "
      "--set prune.layer_sparsity=0.5 --set prune.layer_importance=loss --set prune.hidden_sparsity=0.25 "
      "--set prune.heads_sparsity=0.5 --set prune.multiple=8 --set prune.importance=taylor "
      "--set prune.schedule=gradual --set prune.start_step=0 --set prune.end_step=4 --set prune.every_steps=2 ";
  const auto full = run_tool(dir, "qtrain", run + "--set run.output_dir=" + (dir / "full").string(), testing::mpirun(2));
  ASSERT_EQ(full.status, 0) << full.err;
  EXPECT_NE(full.err.find("1 of 2 layers, 24 of 32 hidden channels"), std::string::npos) << full.err;
  const auto config = nlohmann::json::parse(testing::read_text(dir / "full/export/config.json"));
  EXPECT_EQ(config["num_hidden_layers"], 1);
  EXPECT_EQ(config["hidden_size"], 24);
  EXPECT_EQ(config["num_key_value_heads"], 1);
  EXPECT_EQ(config["intermediate_size"], 48);
  const auto ppl = perplexities(dir / "full");
  ASSERT_EQ(ppl.size(), 2u);
  EXPECT_NEAR(ppl[1], ppl[0], 1e-5 * ppl[0]);
  auto exported = model::load_causal_lm((dir / "full/export").string());
  EXPECT_EQ(exported->model->embed_tokens->weight.size(1), 24);
  EXPECT_NEAR(testing::fixture_perplexity(*exported), ppl[0], 1e-5 * ppl[0]);
  const auto again = run_tool(dir, "qtrain", "export --checkpoint " + (dir / "full/checkpoints/step_00000008").string() +
                                               " --output " + (dir / "again").string());
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_NE(again.out.find("1 layers, hidden_size 24"), std::string::npos) << again.out;
  EXPECT_EQ(testing::read_text(dir / "again/model.safetensors"), testing::read_text(dir / "full/export/model.safetensors"));
  // The metrics say what is kept.
  bool logged = false;
  for (const auto& r : records(dir / "full"))
    if (r.contains("kept_layers") && r["step"] == 4) logged = r["kept_layers"] == 1 && r["kept_hidden"] == 24;
  EXPECT_TRUE(logged);
}

TEST(QtrainPruning, ImpossibleDepthHiddenAndExpertTargetsExitWithStatus2) {
  const auto dir = testing::scratch_dir();
  const auto out = "--set run.output_dir=" + (dir / "run").string();
  const auto layers = run_tool(dir, "qtrain", kConfig + "--set prune.layer_sparsity=0.9 " + out);
  EXPECT_EQ(layers.status, 2);
  EXPECT_NE(layers.err.find("prune.layer_sparsity"), std::string::npos) << layers.err;
  const auto hidden = run_tool(dir, "qtrain", kConfig + "--set prune.hidden_sparsity=0.5 " + out);  // multiple 64 > 32
  EXPECT_EQ(hidden.status, 2);
  EXPECT_NE(hidden.err.find("prune.hidden_sparsity"), std::string::npos) << hidden.err;
  const auto experts = run_tool(dir, "qtrain", kConfig + "--set prune.expert_sparsity=0.5 " + out);
  EXPECT_EQ(experts.status, 2);
  EXPECT_NE(experts.err.find("prune.expert_sparsity"), std::string::npos) << experts.err;
  // Hidden channels are read by every q/k/v/gate/up: their groups of 16 must divide the multiple.
  const auto groups = run_tool(dir, "qtrain",
                               kConfig + "--set prune.hidden_sparsity=0.5 --set prune.multiple=8 "
                                         "--set \"quant.rules=[lm_head=none, 're:.*self_attn\\..*=w4a16-g16']\" " + out);
  EXPECT_EQ(groups.status, 2);
  EXPECT_NE(groups.err.find("prune.multiple"), std::string::npos) << groups.err;
  EXPECT_NE(groups.err.find("self_attn.k_proj"), std::string::npos) << groups.err;
}

}  // namespace
}  // namespace qtrain
