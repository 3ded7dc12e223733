// Sizes read back from an export folder equal what the exporter counted while writing it,
// and an unquantized fp32 folder has 32 bits per weight.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "model/hf_checkpoint.h"
#include "quant/export.h"
#include "quant/export_size.h"
#include "quant/quantized_model.h"
#include "tests/test_util.h"

namespace qtrain::quant {
namespace {

TEST(ExportSize, FolderSizeEqualsTheExportSummary) {
  auto m = model::load_causal_lm(testing::fixture("llama_gqa_llama3").string());
  attach_fake_quant(*m, assign_schemes(*m, parse_rules({"re:.*mlp\\..*=w4a16-g32", "re:.*self_attn\\..*=w8a16"})), {});
  const auto dir = testing::scratch_dir() / "export";
  const auto summary = export_compressed_tensors(*m, dir.string());
  const auto size = folder_size(dir.string());
  EXPECT_EQ(size.quantized_linears, summary.quantized_linears);
  EXPECT_EQ(size.quantized_weights, summary.quantized_weights);
  EXPECT_EQ(size.quantized_bytes, summary.quantized_bytes);
  EXPECT_EQ(size.tensor_bytes, summary.total_bytes);
  EXPECT_EQ(size.bits_per_weight(), summary.bits_per_quantized_weight());
  EXPECT_EQ(size.file_bytes, static_cast<int64_t>(std::filesystem::file_size(dir / "model.safetensors")));
  EXPECT_GT(size.file_bytes, size.tensor_bytes);  // the header
}

TEST(ExportSize, Fp32FolderHas32BitsPerWeightAndReferenceDataIsNotCounted) {
  const auto size = folder_size(testing::fixture("llama_gqa_llama3").string());  // also holds reference.safetensors
  EXPECT_EQ(size.quantized_linears, 0);
  EXPECT_EQ(size.bits_per_weight(), 32.0);
  auto m = model::load_causal_lm(testing::fixture("llama_gqa_llama3").string());
  int64_t elements = 0;
  for (const auto& p : m->parameters()) elements += p.numel();
  EXPECT_EQ(size.elements, elements);
}

// A damaged quantization_config (a non-string target, a group that is not an object) is an
// Error naming config.json and the key, not a JSON type error (issue 24: status 1).
TEST(ExportSize, ADamagedQuantizationConfigIsAnErrorNamingTheKey) {
  auto m = model::load_causal_lm(testing::fixture("llama_gqa_llama3").string());
  attach_fake_quant(*m, assign_schemes(*m, parse_rules({"re:.*mlp\\..*=w4a16-g32"})), {});
  const auto dir = testing::scratch_dir() / "export";
  export_compressed_tensors(*m, dir.string());
  const auto path = (dir / "config.json").string();
  const auto pristine = testing::read_text(path);
  const auto message = [&](const std::function<void(nlohmann::json&)>& damage) {
    auto config = nlohmann::json::parse(pristine);
    damage(config);
    std::ofstream(path) << config.dump();
    try {
      folder_size(dir.string());
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("<no error>");
  };
  EXPECT_EQ(message([](nlohmann::json& c) { c["quantization_config"]["config_groups"]["group_0"]["targets"][0] = 7; }),
            path + ": key 'quantization_config.config_groups.group_0.targets[0]': not a string (expected: module "
                   "names or re: patterns)");
  EXPECT_EQ(message([](nlohmann::json& c) { c["quantization_config"]["config_groups"]["group_0"] = 1; }),
            path + ": key 'quantization_config.config_groups.group_0': not an object");
  EXPECT_EQ(message([](nlohmann::json& c) { c["quantization_config"] = "x"; }),
            path + ": key 'quantization_config': not an object");
}

}  // namespace
}  // namespace qtrain::quant
