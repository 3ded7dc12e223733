// The FP4 and FP8-activation schemes (nvfp4a16, nvfp4, mxfp4a16, mxfp4, fp8-block, w4afp8)
// from fake quantization to the compressed-tensors folder and back through qeval's reader:
// the decoded weights equal the fake-quantized ones bit for bit, the logits too (the
// activations are quantized by the same functions on both sides), perplexity within 0.1%,
// and the folder holds the tensor names, dtypes and shapes of docs/formats.md (read from
// compressed-tensors' and vLLM's sources) with bits per weight measured from the files.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <nlohmann/json.hpp>

#include "data/token_file.h"
#include "eval/perplexity.h"
#include "model/hf_checkpoint.h"
#include "quant/export.h"
#include "quant/export_size.h"
#include "quant/fp4.h"
#include "quant/fp8.h"
#include "quant/int_linear.h"
#include "quant/load_compressed.h"
#include "quant/quantized_model.h"
#include "tests/test_util.h"

namespace qtrain::quant {
namespace {

namespace fs = std::filesystem;

// The fixture Llama (hidden 64, intermediate 96), or a random one of the same family twice as
// wide where a scheme needs 128 input columns (fp8-block's activation groups, w4afp8's weight
// groups), with `rules`, calibrated on the first windows of tokens.h5.
model::CausalLM quantized_model(const std::vector<std::string>& rules, bool wide) {
  auto m = model::load_causal_lm(testing::fixture("llama_gqa_llama3").string());
  if (wide) {
    auto config = m->config();
    config.hidden_size = 128;
    config.intermediate_size = 256;
    config.head_dim = 32;
    m = model::CausalLM(config);
    model::init_weights(*m, 0.08, 11);
  }
  attach_fake_quant(*m, assign_schemes(*m, parse_rules(rules)), FakeQuantOptions{});
  auto tokens = data::TokenFile::open(testing::fixture("tokens.h5").string());
  calibrate_activations(*m, [&] { m->forward(tokens.read(0, 4 * 64).view({4, 64})); });
  return m;
}

double perplexity(model::CausalLMImpl& m) {
  auto tokens = data::TokenFile::open(testing::fixture("tokens.h5").string());
  eval::PerplexityOptions o;
  o.seq_len = 64;
  o.show_progress = false;
  return eval::evaluate_perplexity(m, tokens, o).perplexity;
}

IntLinear* int_linear(model::CausalLMImpl& m, const std::string& name) {
  auto* linear = m.named_modules("", false)[name]->as<model::LinearImpl>();
  return dynamic_cast<IntLinear*>(linear->wrapper().get());
}

std::string dtype_of(const model::HFCheckpoint& ck, const std::string& name) {
  return ck.file_of(name).entry(name).dtype->name;
}
std::vector<int64_t> shape_of(const model::HFCheckpoint& ck, const std::string& name) {
  return ck.file_of(name).entry(name).shape;
}

bool needs_wide(const std::string& scheme) { return scheme == "fp8-block" || scheme == "w4afp8"; }

class ExportFp4Schemes : public ::testing::TestWithParam<std::string> {};

TEST_P(ExportFp4Schemes, QevalDecodesTheFakeQuantWeightsBitForBit) {
  const auto scheme = GetParam();
  auto fake = quantized_model({"lm_head=none", "re:.*=" + scheme}, needs_wide(scheme));
  const auto dir = testing::scratch_dir() / "exported";
  const auto summary = export_compressed_tensors(*fake, dir.string(), {torch::kBFloat16, ""});
  EXPECT_EQ(summary.quantized_linears, 14);
  auto integer = load_for_eval(dir.string());
  torch::NoGradGuard no_grad;
  auto modules = fake->named_modules("", false);
  for (const auto& [name, layer] : fake_quant_layers(*fake)) {
    const auto& w = modules[name]->as<model::LinearImpl>()->weight;
    const auto simulated = layer->weights().forward(w);
    const auto decoded = int_linear(*integer, name)->dequantized_weight();
    EXPECT_TRUE(decoded.equal(simulated)) << scheme << " " << name << ": " << (decoded - simulated).abs().max().item<double>();
  }
  // The unquantized tensors were stored in bf16: the fake model with those, then the logits
  // agree bit for bit (the same dequantized operands into the same GEMM call).
  std::set<std::string> quantized;
  for (const auto& [name, layer] : fake_quant_layers(*fake)) quantized.insert(name + ".weight");
  for (auto& item : fake->named_parameters())
    if (!quantized.count(item.key()) && item.key().find(".quant.") == std::string::npos)
      item.value().set_data(item.value().to(torch::kBFloat16).to(torch::kFloat32));
  torch::manual_seed(5);
  const auto ids = torch::randint(0, 256, {2, 32}, torch::TensorOptions().dtype(torch::kInt64));
  const auto a = fake->forward(ids), b = integer->forward(ids);
  EXPECT_TRUE(a.equal(b)) << scheme << ": " << (a - b).abs().max().item<double>();
  const auto pa = perplexity(*fake), pb = perplexity(*integer);
  EXPECT_NEAR(pb, pa, 1e-3 * pa) << scheme;  // the 0.1%
  // Quantization costs something, but the model still works.
  EXPECT_TRUE(std::isfinite(pa)) << scheme;
}

INSTANTIATE_TEST_SUITE_P(Schemes, ExportFp4Schemes,
                         ::testing::Values("nvfp4a16", "nvfp4", "mxfp4a16", "mxfp4", "fp8-block", "w4afp8"),
                         [](const auto& info) {
                           auto n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

// NVFP4 as compressed-tensors' NVFP4Compressor writes it and vLLM's
// CompressedTensorsW4A4Fp4.create_weights allocates it: weight_packed U8 [out, in/2],
// weight_scale F8_E4M3 [out, in/16], weight_global_scale F32 [1], input_global_scale F32 [1];
// q/k/v and gate/up share one global scale, 448 * 6 over the largest absmax among them.
TEST(ExportFp4, Nvfp4LayoutConfigAndSharedGlobalScales) {
  auto m = quantized_model({"lm_head=none", "re:.*=nvfp4"}, false);
  const auto dir = testing::scratch_dir() / "nvfp4";
  const auto summary = export_compressed_tensors(*m, dir.string(), {torch::kBFloat16, ""});
  const auto ck = model::HFCheckpoint::open(dir.string());
  const std::string down = "model.layers.0.mlp.down_proj.";
  EXPECT_EQ(dtype_of(ck, down + "weight_packed"), "U8");
  EXPECT_EQ(shape_of(ck, down + "weight_packed"), (std::vector<int64_t>{64, 48}));
  EXPECT_EQ(dtype_of(ck, down + "weight_scale"), "F8_E4M3");
  EXPECT_EQ(shape_of(ck, down + "weight_scale"), (std::vector<int64_t>{64, 6}));
  EXPECT_EQ(dtype_of(ck, down + "weight_global_scale"), "F32");
  EXPECT_EQ(shape_of(ck, down + "weight_global_scale"), (std::vector<int64_t>{1}));
  EXPECT_EQ(dtype_of(ck, down + "input_global_scale"), "F32");
  EXPECT_FALSE(ck.contains(down + "weight_shape"));
  EXPECT_FALSE(ck.contains(down + "input_scale"));
  // The global scales of a fused group are one, from its largest absmax.
  auto modules = m->named_modules("", false);
  for (const auto& [group, members] : std::vector<std::pair<std::string, std::vector<std::string>>>{
           {"model.layers.1.self_attn.", {"q_proj", "k_proj", "v_proj"}}, {"model.layers.1.mlp.", {"gate_proj", "up_proj"}}}) {
    auto absmax = torch::zeros({});
    for (const auto& member : members)
      absmax = torch::maximum(absmax, modules[group + member]->as<model::LinearImpl>()->weight.abs().max());
    for (const auto& member : members)
      EXPECT_TRUE(ck.tensor(group + member + ".weight_global_scale").equal(nvfp4_global_scale(absmax))) << member;
  }
  // The input global scales are calibrated per layer; q/k/v saw the same input.
  EXPECT_TRUE(ck.tensor("model.layers.1.self_attn.q_proj.input_global_scale")
                  .equal(ck.tensor("model.layers.1.self_attn.v_proj.input_global_scale")));
  std::ifstream in(dir / "config.json");
  const auto qc = nlohmann::json::parse(in)["quantization_config"];
  EXPECT_EQ(qc["format"], "nvfp4-pack-quantized");
  ASSERT_EQ(qc["config_groups"].size(), 1u);
  const auto& group = qc["config_groups"]["group_0"];
  EXPECT_EQ(group["format"], "nvfp4-pack-quantized");
  for (const auto* key : {"weights", "input_activations"}) {
    EXPECT_EQ(group[key]["num_bits"], 4) << key;
    EXPECT_EQ(group[key]["type"], "float") << key;
    EXPECT_EQ(group[key]["strategy"], "tensor_group") << key;
    EXPECT_EQ(group[key]["group_size"], 16) << key;
    EXPECT_EQ(group[key]["scale_dtype"], "torch.float8_e4m3fn") << key;
  }
  EXPECT_EQ(group["weights"]["dynamic"], false);
  EXPECT_EQ(group["input_activations"]["dynamic"], "local");
  // 4 bits + one E4M3 scale per 16 = 4.5, plus the two fp32 global scales of each linear
  // (on these small matrices 0.015 bits more).
  const auto size = folder_size(dir.string());
  EXPECT_EQ(size.quantized_weights, summary.quantized_weights);
  const double weights = static_cast<double>(summary.quantized_weights);
  EXPECT_DOUBLE_EQ(size.bits_per_weight(), (4.5 * weights + 8.0 * 8 * summary.quantized_linears) / weights);
  EXPECT_EQ(size.bits_per_weight(), summary.bits_per_quantized_weight());
}

// MXFP4 (compressed-tensors' MXFP4PackedCompressor, vLLM's CompressedTensorsW4A4Mxfp4):
// weight_packed U8 [out, in/2], weight_scale U8 [out, in/32] E8M0 exponents, no global
// scale: 4 + 8/32 = 4.25 bits per weight exactly.
TEST(ExportFp4, Mxfp4LayoutAndBitsPerWeight) {
  auto m = quantized_model({"lm_head=none", "re:.*=mxfp4a16"}, false);
  const auto dir = testing::scratch_dir() / "mxfp4";
  export_compressed_tensors(*m, dir.string(), {torch::kBFloat16, ""});
  const auto ck = model::HFCheckpoint::open(dir.string());
  const std::string up = "model.layers.0.mlp.up_proj.";
  EXPECT_EQ(dtype_of(ck, up + "weight_packed"), "U8");
  EXPECT_EQ(shape_of(ck, up + "weight_packed"), (std::vector<int64_t>{96, 32}));
  EXPECT_EQ(dtype_of(ck, up + "weight_scale"), "U8");
  EXPECT_EQ(shape_of(ck, up + "weight_scale"), (std::vector<int64_t>{96, 2}));
  EXPECT_FALSE(ck.contains(up + "weight_global_scale"));
  // The stored exponents are those of the simulated power-of-two scales.
  auto* linear = m->named_modules("", false)["model.layers.0.mlp.up_proj"]->as<model::LinearImpl>();
  const auto& layer = *fake_quant_layers(*m).at("model.layers.0.mlp.up_proj");
  const auto qp = layer.weights().qparams(linear->weight);
  EXPECT_TRUE(mxfp4_scales(ck.tensor(up + "weight_scale")).reshape({-1, 1}).equal(qp.scale));
  std::ifstream in(dir / "config.json");
  const auto group = nlohmann::json::parse(in)["quantization_config"]["config_groups"]["group_0"];
  EXPECT_EQ(group["format"], "mxfp4-pack-quantized");
  EXPECT_EQ(group["weights"]["strategy"], "group");
  EXPECT_EQ(group["weights"]["group_size"], 32);
  EXPECT_EQ(group["weights"]["scale_dtype"], "torch.uint8");
  EXPECT_TRUE(group["input_activations"].is_null());
  EXPECT_DOUBLE_EQ(folder_size(dir.string()).bits_per_weight(), 4.25);
}

// FP8 blocks (compressed-tensors' FP8_BLOCK, vLLM's W8A8 FP8 block path): weight F8_E4M3
// [out, in], weight_scale in the checkpoint dtype [ceil(out/128), ceil(in/128)] (the last
// blocks padded with zeros), absmax / 448 of each block; w4afp8 (vLLM's W4A8-FP8): int4
// pack-quantized weights with group-128 scales and dynamic FP8 per-token activations.
TEST(ExportFp4, Fp8BlockAndW4afp8Layouts) {
  auto m = quantized_model({"lm_head=none", "re:.*self_attn.*=fp8-block", "re:.*mlp.*=w4afp8"}, true);
  const auto dir = testing::scratch_dir() / "fp8block";
  export_compressed_tensors(*m, dir.string(), {torch::kBFloat16, ""});
  const auto ck = model::HFCheckpoint::open(dir.string());
  const std::string k = "model.layers.0.self_attn.k_proj.";  // [64, 128]: one block row, half padding
  EXPECT_EQ(dtype_of(ck, k + "weight"), "F8_E4M3");
  EXPECT_EQ(shape_of(ck, k + "weight"), (std::vector<int64_t>{64, 128}));
  EXPECT_EQ(dtype_of(ck, k + "weight_scale"), "BF16");
  EXPECT_EQ(shape_of(ck, k + "weight_scale"), (std::vector<int64_t>{1, 1}));
  const std::string o = "model.layers.0.self_attn.o_proj.";  // [128, 128]
  EXPECT_EQ(shape_of(ck, o + "weight_scale"), (std::vector<int64_t>{1, 1}));
  auto modules = m->named_modules("", false);
  const auto& kw = modules["model.layers.0.self_attn.k_proj"]->as<model::LinearImpl>()->weight;
  EXPECT_FLOAT_EQ(ck.tensor(k + "weight_scale").item<float>(),
                  (kw.abs().max() / 448.0).to(torch::kBFloat16).item<float>());
  const std::string down = "model.layers.1.mlp.down_proj.";  // [128, 256]
  EXPECT_EQ(dtype_of(ck, down + "weight_packed"), "I32");
  EXPECT_EQ(shape_of(ck, down + "weight_packed"), (std::vector<int64_t>{128, 32}));
  EXPECT_EQ(shape_of(ck, down + "weight_scale"), (std::vector<int64_t>{128, 2}));
  EXPECT_FALSE(ck.contains(down + "input_scale"));
  std::ifstream in(dir / "config.json");
  const auto qc = nlohmann::json::parse(in)["quantization_config"];
  EXPECT_EQ(qc["format"], "mixed-precision");
  int seen = 0;
  for (const auto& [name, group] : qc["config_groups"].items()) {
    if (group["format"] == "float-quantized") {
      EXPECT_EQ(group["weights"]["strategy"], "block");
      EXPECT_EQ(group["weights"]["block_structure"], nlohmann::json::array({128, 128}));
      EXPECT_EQ(group["input_activations"]["strategy"], "group");
      EXPECT_EQ(group["input_activations"]["group_size"], 128);
      EXPECT_EQ(group["input_activations"]["dynamic"], true);
      ++seen;
    } else {
      EXPECT_EQ(group["format"], "pack-quantized");  // vLLM's W4A8-FP8 reads weight_packed
      EXPECT_EQ(group["weights"]["group_size"], 128);
      EXPECT_EQ(group["input_activations"]["type"], "float");
      EXPECT_EQ(group["input_activations"]["strategy"], "token");
      ++seen;
    }
  }
  EXPECT_EQ(seen, 2);
}

// Mixed rules combine the formats: NVFP4 attention, MXFP4 MLPs; fused layers must still
// agree (an NVFP4 q_proj beside an MXFP4 k_proj is refused).
TEST(ExportFp4, RulesCombineFormatsAndFusedLayersAgree) {
  auto m = quantized_model({"lm_head=none", "re:.*self_attn.*=nvfp4a16", "re:.*mlp.*=mxfp4"}, false);
  const auto dir = testing::scratch_dir() / "mixed";
  export_compressed_tensors(*m, dir.string(), {torch::kFloat32, ""});  // the unquantized tensors as trained
  std::ifstream in(dir / "config.json");
  const auto qc = nlohmann::json::parse(in)["quantization_config"];
  EXPECT_EQ(qc["format"], "mixed-precision");
  EXPECT_EQ(qc["config_groups"].size(), 2u);
  auto integer = load_for_eval(dir.string());
  EXPECT_NEAR(perplexity(*integer), perplexity(*m), 1e-3 * perplexity(*m));
  auto plain = model::load_causal_lm(testing::fixture("llama_gqa_llama3").string());
  EXPECT_THROW(assign_schemes(*plain, parse_rules({"re:.*q_proj=nvfp4", "re:.*=mxfp4"})), Error);
}

}  // namespace
}  // namespace qtrain::quant
