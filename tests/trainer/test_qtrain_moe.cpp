// Mixture-of-experts students through the whole job (tests/fixtures/moe_reference: a Mixtral
// and a Qwen3-MoE teacher, each distilled into a copy): KD on the logits with w4a16 QAT of
// every expert (routers stay in floating point), replicated (stage 0) and sharded (stage 3)
// on 2 ranks: the same per-step losses within 1e-6 relative (the tolerance of
// test_qtrain_zero.cpp), and an export whose perplexity equals the student's within 1e-4
// (fp32 export); with the load-balancing loss on (distill.router_aux_loss) the loss differs
// from the run without it by that term, and stage 3 and activation checkpointing train as
// stage 0 does. Pruning experts, layers and hidden
// channels of a Qwen3-MoE student with QAT at stages 0 and 3: the same losses, an export
// with the kept sizes (and Qwen3-MoE's dense layer renumbered) whose perplexity equals the
// masked student's. MLP-channel pruning of a mixture and the load-balancing loss on a dense
// student are refused with the key.
#include <gtest/gtest.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "tests/test_util.h"

namespace qtrain {
namespace {

using testing::run_tool;

std::string moe_job(const std::string& family) {
  return "--config tests/fixtures/train_tiny.yaml --set model.teacher=tests/fixtures/moe_reference/" + family +
         " --set model.student=copy --set \"model.student_overrides=[]\" --set distill.gamma=0 --set distill.alpha=0.5 "
         "--set training.steps=4 --set checkpoint.every_steps=4 "
         "--set quant.export_dtype=fp32 --set \"quant.rules=[lm_head=none, 're:.*=w4a16-g16']\" ";
}

class QtrainMoe : public ::testing::TestWithParam<std::string> {};

TEST_P(QtrainMoe, QatAndKdAtStages0And3ExportTheStudent) {
  const auto dir = testing::scratch_dir();
  std::map<std::string, std::map<int64_t, nlohmann::json>> steps;
  for (const std::string stage : {"0", "3"}) {
    const auto out = dir / ("zero" + stage);
    const auto r = run_tool(dir, "qtrain", moe_job(GetParam()) + "--set parallel.zero_stage=" + stage +
                                               " --set run.output_dir=" + out.string(),
                            testing::mpirun(2));
    ASSERT_EQ(r.status, 0) << r.err;
    const auto line = r.out.find("fake-quant student ");
    ASSERT_NE(line, std::string::npos) << r.out;
    double student = 0, exported = 0;
    ASSERT_EQ(std::sscanf(r.out.c_str() + line, "fake-quant student %lf, exported integer checkpoint %lf", &student,
                          &exported), 2);
    EXPECT_NEAR(exported, student, 1e-4 * student) << "stage " << stage;
    steps[stage] = testing::step_records(out);
    const auto config = nlohmann::json::parse(testing::read_text(out / "export/config.json"));
    for (const auto& ignored : config["quantization_config"]["ignore"])
      if (ignored.get<std::string>() == "model.layers.0.mlp.gate" ||
          ignored.get<std::string>() == "model.layers.0.block_sparse_moe.gate")
        steps[stage + "_router_ignored"] = {};
    EXPECT_TRUE(steps.count(stage + "_router_ignored")) << "the router is not in quantization_config.ignore";
  }
  ASSERT_EQ(steps["0"].size(), 4u);
  ASSERT_EQ(steps["3"].size(), 4u);
  for (const auto& [step, record] : steps["0"]) {
    const double x = record["loss"], y = steps["3"].at(step)["loss"];
    EXPECT_NEAR(x, y, 1e-6 * std::abs(x)) << "step " << step;
  }
}

INSTANTIATE_TEST_SUITE_P(Families, QtrainMoe, ::testing::Values("mixtral", "qwen3_moe"),
                         [](const auto& info) { return info.param; });

// The load-balancing loss is part of the optimised loss: at step 1 (same weights) the logged
// loss grows by 0.5 x the term (about top_k = 2 near balance), and training still exports.
TEST(QtrainMoeAuxLoss, AddsTheWeightedTermAtStage1) {
  const auto dir = testing::scratch_dir();
  std::map<std::string, double> first;
  for (const std::string weight : {"0", "0.5"}) {
    const auto out = dir / ("aux" + weight);
    const auto r = run_tool(dir, "qtrain", moe_job("mixtral") + "--set parallel.zero_stage=2 --set distill.router_aux_loss=" +
                                               weight + " --set run.output_dir=" + out.string(),
                            testing::mpirun(2));
    ASSERT_EQ(r.status, 0) << r.err;
    const auto records = testing::step_records(out);
    first[weight] = records.at(1)["loss"].get<double>();
    if (weight != "0") first["logged"] = records.at(1)["loss_router"].get<double>();
  }
  const double term = (first["0.5"] - first["0"]) / 0.5;
  EXPECT_NEAR(first["logged"], term, 1e-4 * term);  // metrics.jsonl's loss_router is that term
  EXPECT_GT(term, 1.9);  // >= top_k, equality at perfect balance
  EXPECT_LT(term, 4.0);  // at most top_k x experts / 2 for these 4 experts
}

// Qwen3-MoE (3 layers, layer 1 dense): half the experts by their routed contribution, one
// layer by cosine, a quarter of the hidden channels, with w4a16-g16 QAT of every linear.
TEST(QtrainMoePruning, ExpertsLayersAndHiddenAtStages0And3) {
  const auto dir = testing::scratch_dir();
  std::map<std::string, std::map<int64_t, nlohmann::json>> steps;
  for (const std::string stage : {"0", "3"}) {
    const auto out = dir / ("zero" + stage);
    const auto r = run_tool(dir, "qtrain",
                            moe_job("qwen3_moe") + "--set prune.expert_sparsity=0.5 --set prune.layer_sparsity=0.34 "
                                                   "--set prune.hidden_sparsity=0.25 --set prune.multiple=16 "
                                                   "--set parallel.zero_stage=" + stage + " --set run.output_dir=" +
                                out.string(),
                            testing::mpirun(2));
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.err.find("2 of 4 experts, 2 of 3 layers, 48 of 64 hidden channels"), std::string::npos) << r.err;
    const auto line = r.out.find("masked student ");
    ASSERT_NE(line, std::string::npos) << r.out;
    double student = 0, exported = 0;
    ASSERT_EQ(std::sscanf(r.out.c_str() + line, "masked student %lf, exported pruned checkpoint %lf", &student, &exported), 2);
    EXPECT_NEAR(exported, student, 1e-4 * student) << "stage " << stage;
    const auto config = nlohmann::json::parse(testing::read_text(out / "export/config.json"));
    EXPECT_EQ(config["num_hidden_layers"], 2);
    EXPECT_EQ(config["hidden_size"], 48);
    EXPECT_EQ(config["num_experts"], 2);
    EXPECT_EQ(config["quantization_config"]["quant_method"], "compressed-tensors");
    EXPECT_EQ(config["decoder_sparse_step"], 1);
    steps[stage] = testing::step_records(out);
    if (stage == "0") continue;
    // From the stage-3 checkpoint, `qtrain export` writes the same folder.
    const auto again = run_tool(dir, "qtrain", "export --checkpoint " + (out / "checkpoints/step_00000004").string() +
                                                 " --output " + (dir / "again").string());
    ASSERT_EQ(again.status, 0) << again.err;
    EXPECT_EQ(testing::read_text(dir / "again/model.safetensors"), testing::read_text(out / "export/model.safetensors"));
  }
  for (const auto& [step, record] : steps["0"]) {
    const double x = record["loss"], y = steps["3"].at(step)["loss"];
    EXPECT_NEAR(x, y, 1e-6 * std::abs(x)) << "step " << step;
  }
}

// The load-balancing gradient reaches the routers inside each layer's own graph (hooks on
// the router probabilities, model/moe.h), so that ZeRO-3's gathered layers and activation
// checkpointing's re-run get it too: with a large weight (0.5, so that a missing or doubled
// gradient moves the later losses), the per-step losses of stage 0, stage 3 and stage 0 with
// checkpointing agree within 1e-6 relative, and differ from the run without the term.
TEST(QtrainMoeAuxLoss, SameLossesAtStage3AndWithActivationCheckpointing) {
  const auto dir = testing::scratch_dir();
  std::map<std::string, std::map<int64_t, nlohmann::json>> steps;
  for (const auto& [name, args] : std::vector<std::pair<std::string, std::string>>{
           {"zero0", "--set parallel.zero_stage=0 --set distill.router_aux_loss=0.5 "},
           {"zero3", "--set parallel.zero_stage=3 --set distill.router_aux_loss=0.5 "},
           {"checkpointed", "--set training.activation_checkpointing=true --set distill.router_aux_loss=0.5 "},
           {"without", "--set parallel.zero_stage=0 "}}) {
    const auto out = dir / name;
    const auto r = run_tool(dir, "qtrain", moe_job("qwen3_moe") + args + "--set quant.export_at_end=false --set run.output_dir=" +
                                               out.string(),
                            testing::mpirun(2));
    ASSERT_EQ(r.status, 0) << name << ": " << r.err;
    steps[name] = testing::step_records(out);
    ASSERT_EQ(steps[name].size(), 4u) << name;
  }
  for (const std::string other : {"zero3", "checkpointed"})
    for (const auto& [step, record] : steps["zero0"]) {
      const double x = record["loss"], y = steps[other].at(step)["loss"];
      EXPECT_NEAR(x, y, 1e-6 * std::abs(x)) << other << ", step " << step;
      EXPECT_NEAR(record["loss_router"].get<double>(), steps[other].at(step)["loss_router"].get<double>(), 1e-6)
          << other << ", step " << step;
    }
  // The term changes the training: the router's loss at the last step is not the untrained one.
  const double with_term = steps["zero0"].at(4)["loss"], without = steps["without"].at(4)["loss"];
  EXPECT_GT(std::abs(with_term - without), 1e-3 * std::abs(without));
}

TEST(QtrainMoeRefusals, MlpChannelPruningOfAMixtureNamesTheKey) {
  const auto dir = testing::scratch_dir();
  const auto r = run_tool(dir, "qtrain", moe_job("mixtral") + "--set prune.mlp_sparsity=0.25 --set run.output_dir=" +
                                             (dir / "run").string());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("prune.mlp_sparsity"), std::string::npos) << r.err;
}

TEST(QtrainMoeRefusals, RouterLossOnADenseStudentNamesTheKey) {
  const auto dir = testing::scratch_dir();
  const auto r = run_tool(dir, "qtrain", "--config tests/fixtures/train_tiny.yaml --set distill.router_aux_loss=0.01 "
                                         "--set run.output_dir=" + (dir / "run").string());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("distill.router_aux_loss"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace qtrain
