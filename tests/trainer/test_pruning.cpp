// The pruned export of the trainer (trainer/pruning.h) combined with quantization: a masked,
// fake-quantized fixture exported pruned and quantized at once loads in the integer
// evaluator and computes what the masked fake-quant model computed (the tolerances of
// tests/quant/test_export.cpp), with the smaller sizes in its config.json.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "data/token_file.h"
#include "eval/perplexity.h"
#include "model/hf_checkpoint.h"
#include "prune/masks.h"
#include "quant/load_compressed.h"
#include "quant/quantized_model.h"
#include "tests/test_util.h"
#include "trainer/pruning.h"

namespace qtrain::trainer {
namespace {


class PrunedQuantizedExport : public ::testing::TestWithParam<std::string> {};

TEST_P(PrunedQuantizedExport, IntegerModelComputesWhatTheMaskedFakeQuantModelDid) {
  const auto scheme = GetParam();
  auto m = model::load_causal_lm(testing::fixture("llama_gqa_llama3").string());
  quant::attach_fake_quant(*m, quant::assign_schemes(*m, quant::parse_rules({"lm_head=none", "re:.*=" + scheme})), {});
  auto tokens = data::TokenFile::open(testing::fixture("tokens.h5").string());
  quant::calibrate_activations(*m, [&] { m->forward(tokens.read(0, 4 * 64).view({4, 64})); });
  // Keep 48 of 96 channels (3 groups of 16) and one of two KV groups, other ones per layer.
  prune::StructuredMasks masks(m->config(), torch::kCPU);
  torch::manual_seed(4);
  prune::Importance scores;
  for (int i = 0; i < 2; ++i) {
    scores.mlp_channels.push_back(torch::rand({96}, torch::kFloat64));
    scores.kv_groups.push_back(torch::tensor({i == 0 ? 1.0 : 0.0, i == 0 ? 0.0 : 1.0}, torch::kFloat64));
  }
  prune::grow_masks(*masks, scores, {48, 1});
  prune::apply_masks(*m, *masks);
  set_kept_inputs(*m, *masks);
  // The unquantized tensors are exported in bf16: give the masked model the same ones.
  std::set<std::string> quantized;
  for (const auto& [name, layer] : quant::fake_quant_layers(*m)) quantized.insert(name + ".weight");
  for (auto& item : m->named_parameters())
    if (!quantized.count(item.key()) && item.key().find(".quant.") == std::string::npos)
      item.value().set_data(item.value().to(torch::kBFloat16).to(torch::kFloat32));
  const double masked = testing::fixture_perplexity(*m);

  const auto dir = testing::scratch_dir() / "export";
  const auto summary = export_pruned(*m, *masks, dir.string());
  EXPECT_TRUE(summary.quantized);
  EXPECT_EQ(summary.intermediate_size, 48);
  EXPECT_EQ(summary.attention_heads, 2);
  EXPECT_EQ(summary.kv_heads, 1);
  const auto config = nlohmann::json::parse(testing::read_text(dir / "config.json"));
  EXPECT_EQ(config["intermediate_size"], 48);
  EXPECT_EQ(config["num_attention_heads"], 2);
  EXPECT_EQ(config["num_key_value_heads"], 1);
  EXPECT_EQ(config["head_dim"], 16);
  EXPECT_EQ(config["quantization_config"]["quant_method"], "compressed-tensors");
  auto integer = quant::load_for_eval(dir.string());
  const double exported = testing::fixture_perplexity(*integer);
  if (scheme.rfind("w4a16", 0) == 0)  // same dequantized weights, same float GEMMs
    EXPECT_NEAR(exported, masked, 1e-5 * masked) << scheme;
  else  // integer sums vs float sums (tests/quant/test_export.cpp)
    EXPECT_NEAR(exported, masked, 0.005 * masked) << scheme;
}

INSTANTIATE_TEST_SUITE_P(Schemes, PrunedQuantizedExport, ::testing::Values("w4a16-g16", "w8a8"),
                         [](const auto& info) {
                           auto n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

TEST(PrunedExport, PlainExportIsAnFp32HuggingFaceFolder) {
  auto m = model::load_causal_lm(testing::fixture("llama_gqa_llama3").string());
  prune::StructuredMasks masks(m->config(), torch::kCPU);
  masks->layer(0).mlp_channels.slice(0, 0, 32).fill_(false);
  masks->layer(1).mlp_channels.slice(0, 64, 96).fill_(false);
  prune::apply_masks(*m, *masks);
  const double masked = testing::fixture_perplexity(*m);
  const auto dir = testing::scratch_dir() / "export";
  quant::ExportOptions options;
  options.tokenizer_source = testing::fixture("tokenizer/gpt2").string();
  const auto summary = export_pruned(*m, *masks, dir.string(), options);
  EXPECT_FALSE(summary.quantized);
  EXPECT_TRUE(std::filesystem::exists(dir / "tokenizer.json"));
  EXPECT_EQ(summary.intermediate_size, 64);
  EXPECT_EQ(summary.kv_heads, 2);
  auto loaded = model::load_causal_lm(dir.string());
  EXPECT_EQ(loaded->config().intermediate_size, 64);
  EXPECT_EQ(loaded->config().dtype, "float32");
  EXPECT_NEAR(testing::fixture_perplexity(*loaded), masked, 1e-5 * masked);
}

}  // namespace
}  // namespace qtrain::trainer
