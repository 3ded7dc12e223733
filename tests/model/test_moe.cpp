// Mixtures of experts (model/moe.h): Qwen3-MoE (q/k norms, norm_topk_prob, a dense
// mlp_only_layers layer) and Mixtral (w1/w3/w2 experts under block_sparse_moe) against a
// PyTorch reference of transformers' forward (tests/fixtures/moe_reference/
// make_moe_reference.py, python3-torch 1.13, fp32 on CPU; it runs every expert on every token,
// the C++ side only the routed tokens): logits within 1e-5 relative to the largest reference
// logit, the tokens each expert saw and the load-balancing loss equal to the reference's; the
// checkpoint round-trips under HF's names; GPTQ records each expert's tokens and leaves an
// expert that saw too few on round-to-nearest; routers stay unquantized; the export of a
// fake-quantized MoE computes what it simulated.
#include <gtest/gtest.h>

#include <cstdio>
#include <set>

#include "data/token_file.h"
#include "model/hf_checkpoint.h"
#include "model/moe.h"
#include "model/safetensors.h"
#include "quant/export.h"
#include "quant/gptq.h"
#include "quant/load_compressed.h"
#include "quant/quantized_model.h"
#include "tests/test_util.h"

namespace qtrain::model {
namespace {

double relative_error(const torch::Tensor& logits, const torch::Tensor& expected) {
  return (logits - expected).abs().max().item<double>() / expected.abs().max().item<double>();
}

std::filesystem::path fixture_dir(const std::string& name) { return testing::fixture("moe_reference/" + name); }

class MoeReference : public ::testing::TestWithParam<std::string> {};

TEST_P(MoeReference, LogitsRoutingAndAuxLossMatchThePyTorchReference) {
  auto model = load_causal_lm(fixture_dir(GetParam()).string(), {torch::kCPU, torch::kFloat32});
  const auto& c = model->config();
  EXPECT_EQ(c.num_experts, 4);
  EXPECT_EQ(c.num_experts_per_tok, 2);
  EXPECT_TRUE(c.norm_topk_prob);
  int64_t parameters = 0;
  for (const auto& p : model->parameters()) parameters += p.numel();
  EXPECT_EQ(parameters, c.num_parameters());
  auto reference = SafetensorsFile::open((fixture_dir(GetParam()) / "reference.safetensors").string());
  const auto ids = reference->tensor("input_ids");
  const auto sparse = sparse_layers(*model);
  ASSERT_EQ(static_cast<int64_t>(sparse.size()), reference->tensor("expert_tokens").size(0));
  for (auto* layer : sparse) layer->set_record_routing(true);
  torch::NoGradGuard no_grad;
  const auto logits = model->forward(ids);
  const double error = relative_error(logits, reference->tensor("logits"));
  std::printf("%s: largest logit difference %.3g relative\n", GetParam().c_str(), error);
  EXPECT_LT(error, 1e-5);
  std::vector<Routing> routings;
  for (size_t i = 0; i < sparse.size(); ++i) {
    EXPECT_TRUE(sparse[i]->last_expert_tokens().equal(reference->tensor("expert_tokens")[i])) << "sparse layer " << i;
    routings.push_back(sparse[i]->last_routing());
  }
  EXPECT_NEAR(load_balancing_loss(routings, c.num_experts).item<double>(), reference->tensor("aux_loss").item<double>(), 1e-6);
}

TEST_P(MoeReference, CheckpointRoundTripsUnderHfNames) {
  const auto dir = fixture_dir(GetParam());
  auto model = load_causal_lm(dir.string(), {torch::kCPU, torch::kFloat32});
  const auto out = testing::scratch_dir() / "saved";
  save_hf_checkpoint(out.string(), model->config(), hf_state(*model));
  EXPECT_EQ(HFCheckpoint::open(out.string()).tensor_names(), HFCheckpoint::open(dir.string()).tensor_names());
  auto again = load_causal_lm(out.string(), {torch::kCPU, torch::kFloat32});
  torch::NoGradGuard no_grad;
  const auto ids = torch::randint(0, 256, {1, 16}, torch::TensorOptions().dtype(torch::kInt64));
  EXPECT_TRUE(again->forward(ids).equal(model->forward(ids)));
}

INSTANTIATE_TEST_SUITE_P(Families, MoeReference, ::testing::Values("qwen3_moe", "mixtral"),
                         [](const auto& info) { return info.param; });

TEST(Moe, ConfigNamesAndLayers) {
  auto qwen = load_causal_lm(fixture_dir("qwen3_moe").string());
  auto names = qwen->named_parameters();
  EXPECT_TRUE(names.contains("model.layers.0.mlp.gate.weight"));
  EXPECT_TRUE(names.contains("model.layers.0.mlp.experts.3.down_proj.weight"));
  EXPECT_TRUE(names.contains("model.layers.1.mlp.gate_proj.weight"));  // mlp_only_layers: dense
  EXPECT_TRUE(names.contains("model.layers.0.self_attn.q_norm.weight"));
  auto mixtral = load_causal_lm(fixture_dir("mixtral").string());
  EXPECT_TRUE(mixtral->named_parameters().contains("model.layers.2.block_sparse_moe.experts.1.w3.weight"));
  // A malformed mixture is refused naming the key.
  auto config = ModelConfig::from_file((fixture_dir("mixtral") / "config.json").string()).raw;
  config["num_experts_per_tok"] = 5;
  try {
    ModelConfig::from_json(config, "config.json");
    FAIL() << "top-5 of 4 experts was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.key_name(), "num_experts_per_tok");
  }
}

// Rules pass routers by; Mixtral's w1/w3 (gate/up) must share a scheme; GPTQ records the
// calibration tokens each expert saw (those the reference routed to it) and leaves an expert
// with fewer tokens than input columns on round-to-nearest; the exported fake-quant MoE
// decodes to the simulated weights and logits.
TEST(Moe, QuantizationRoutersGptqAndExport) {
  auto m = load_causal_lm(fixture_dir("mixtral").string());
  EXPECT_THROW(quant::assign_schemes(*m, quant::parse_rules({"re:.*w1=w4a16-g16", "re:.*w3=w8a16"})), Error);
  const auto assignment = quant::assign_schemes(*m, quant::parse_rules({"lm_head=none", "re:.*=w4a16-g16"}));
  EXPECT_FALSE(assignment.count("model.layers.0.block_sparse_moe.gate"));
  EXPECT_TRUE(assignment.count("model.layers.0.block_sparse_moe.experts.0.w1"));
  EXPECT_TRUE(quant::assign_schemes(*m, quant::parse_rules({"model.layers.0.block_sparse_moe.gate=w8a16"}))
                  .count("model.layers.0.block_sparse_moe.gate"));  // an exact rule does quantize it
  quant::attach_fake_quant(*m, assignment, {});
  auto reference = SafetensorsFile::open((fixture_dir("mixtral") / "reference.safetensors").string());
  const auto ids = reference->tensor("input_ids");
  const auto expert_tokens = reference->tensor("expert_tokens");
  // The reference batch four times. Hessians of layer 0 are collected with every layer
  // fake-quantized (round-to-nearest so far): its experts see the tokens that model routes to
  // them, recorded here beforehand.
  const auto batch = ids.repeat({4, 1});
  auto* first = sparse_layers(*m)[0];
  first->set_record_routing(true);
  {
    torch::NoGradGuard no_grad;
    m->forward(batch);
  }
  first->set_record_routing(false);
  const auto routed = first->last_expert_tokens().clone();
  const auto summary = quant::run_gptq(*m, {}, [&] { m->forward(batch); });
  for (int64_t e = 0; e < 4; ++e) {
    const auto name = "model.layers.0.block_sparse_moe.experts." + std::to_string(e) + ".w1";
    EXPECT_EQ(summary.tokens.at(name), routed[e].item<int64_t>()) << name;
  }
  // Exactly the linears that saw fewer tokens than input columns (w1/w3: 64, w2: 48) keep
  // round-to-nearest; on this batch some do (layer 1's expert 3 is never chosen) and some not.
  const std::set<std::string> rtn(summary.round_to_nearest.begin(), summary.round_to_nearest.end());
  for (const auto& [name, tokens] : summary.tokens)
    EXPECT_EQ(rtn.count(name) == 1, tokens < (name.back() == '2' ? 48 : 64)) << name << ": " << tokens;
  EXPECT_GT(rtn.size(), 0u);
  EXPECT_LT(rtn.size(), summary.tokens.size());
  const auto dir = testing::scratch_dir() / "export";
  quant::export_compressed_tensors(*m, dir.string(), {torch::kFloat32, ""});
  auto integer = quant::load_for_eval(dir.string());
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(integer->forward(ids).equal(m->forward(ids)));
}


// Static activation scales (w8a8) of a mixture calibrated on the reference batch, in which
// layer 1's expert 3 is never chosen: its inputs take over those of the widest of its
// layer's experts that saw tokens (a warning says so), the others keep their own; a linear
// that nothing reaches at all is an error naming quant.calibration_sequences.
TEST(Moe, StaticScalesOfAnExpertWithoutCalibrationTokensComeFromItsWidestSibling) {
  auto m = load_causal_lm(fixture_dir("mixtral").string());
  quant::attach_fake_quant(*m, quant::assign_schemes(*m, quant::parse_rules({"lm_head=none", "re:.*=w8a8"})), {});
  auto reference = SafetensorsFile::open((fixture_dir("mixtral") / "reference.safetensors").string());
  const auto ids = reference->tensor("input_ids");
  ASSERT_EQ(reference->tensor("expert_tokens")[1][3].item<int64_t>(), 0);
  ::testing::internal::CaptureStderr();
  quant::calibrate_activations(*m, [&] { m->forward(ids); });
  const auto err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("no calibration token was routed to 'model.layers.1.block_sparse_moe.experts.3.w1'"),
            std::string::npos) << err;
  auto layers = quant::fake_quant_layers(*m);
  const std::string prefix = "model.layers.1.block_sparse_moe.experts.";
  for (const std::string linear : {".w1", ".w2"}) {
    double widest = 0;
    for (int e = 0; e < 3; ++e)
      widest = std::max(widest, layers.at(prefix + std::to_string(e) + linear)->inputs().scale.item<double>());
    EXPECT_EQ(layers.at(prefix + "3" + linear)->inputs().scale.item<double>(), widest) << linear;
  }
  // Layer 0's experts all saw tokens: each has its own scale.
  EXPECT_NE(layers.at("model.layers.0.block_sparse_moe.experts.0.w1")->inputs().scale.item<double>(),
            layers.at("model.layers.0.block_sparse_moe.experts.1.w1")->inputs().scale.item<double>());
  // Nothing at all: no range for anything.
  auto empty = load_causal_lm(fixture_dir("mixtral").string());
  quant::attach_fake_quant(*empty, quant::assign_schemes(*empty, quant::parse_rules({"lm_head=none", "re:.*=w8a8"})), {});
  try {
    quant::calibrate_activations(*empty, [] {});
    ADD_FAILURE() << "calibration without tokens passed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("quant.calibration_sequences"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace qtrain::model
