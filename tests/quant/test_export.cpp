// Fake quantization -> compressed-tensors export -> integer evaluation: for every scheme the
// integer model (int8 x int8 -> int32 GEMMs, unpacked int4 groups, FP8 grids) computes what
// the fake-quantized model computed, and the folder has the tensors, dtypes, shapes and
// quantization_config that docs/formats.md specifies.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "data/token_file.h"
#include "eval/perplexity.h"
#include "model/hf_checkpoint.h"
#include "quant/export.h"
#include "quant/kv_cache_quant.h"
#include "quant/load_compressed.h"
#include "quant/quantized_model.h"
#include "tests/test_util.h"

namespace qtrain::quant {
namespace {

// The fixture Llama (hidden 64, intermediate 96, 4 heads of 16, 2 kv heads) with `rules`,
// calibrated on the first windows of tokens.h5.
model::CausalLM quantized_fixture(const std::vector<std::string>& rules, const std::string& observer = "minmax") {
  auto m = model::load_causal_lm(testing::fixture("llama_gqa_llama3").string());
  FakeQuantOptions options;
  options.observer.kind = config::parse_choice<config::ObserverKind>(observer, "observer");
  attach_fake_quant(*m, assign_schemes(*m, parse_rules(rules)), options);
  auto tokens = data::TokenFile::open(testing::fixture("tokens.h5").string());
  calibrate_activations(*m, [&] { m->forward(tokens.read(0, 4 * 64).view({4, 64})); });
  return m;
}

eval::PerplexityResult perplexity(model::CausalLMImpl& m) {
  auto tokens = data::TokenFile::open(testing::fixture("tokens.h5").string());
  eval::PerplexityOptions o;
  o.seq_len = 64;
  o.show_progress = false;
  return eval::evaluate_perplexity(m, tokens, o);
}

class ExportSchemes : public ::testing::TestWithParam<std::string> {};

TEST_P(ExportSchemes, IntegerModelComputesWhatFakeQuantSimulated) {
  const auto scheme = GetParam();
  auto fake = quantized_fixture({"lm_head=none", "re:.*=" + scheme});
  const auto dir = testing::scratch_dir() / "exported";
  const auto summary = export_compressed_tensors(*fake, dir.string(), {torch::kBFloat16, ""});
  EXPECT_EQ(summary.quantized_linears, 14);  // 7 per layer, 2 layers; lm_head stays
  auto integer = load_for_eval(dir.string());
  torch::manual_seed(5);
  const auto ids = torch::randint(0, 256, {2, 32}, torch::TensorOptions().dtype(torch::kInt64));
  torch::NoGradGuard no_grad;
  // The unquantized tensors were stored in bf16: compare against the fake model with those
  // (the quantized weights keep their fp32 values, from which the integers were made).
  std::set<std::string> quantized;
  for (const auto& [name, layer] : fake_quant_layers(*fake)) quantized.insert(name + ".weight");
  for (auto& item : fake->named_parameters())
    if (!quantized.count(item.key()) && item.key().find(".quant.") == std::string::npos)
      item.value().set_data(item.value().to(torch::kBFloat16).to(torch::kFloat32));
  const auto a = fake->forward(ids), b = integer->forward(ids);
  const bool weight_only = scheme.find("a16") != std::string::npos;
  const auto pa = perplexity(*fake), pb = perplexity(*integer);
  EXPECT_NEAR(pb.perplexity, pa.perplexity, 0.005 * pa.perplexity) << scheme;  // the 0.5%
  if (weight_only) {
    // The same dequantized fp32 weights ((q - zero point) * scale, the scale rounded through
    // bf16 on both sides) into the same GEMM call: equal bit for bit.
    EXPECT_TRUE(a.equal(b)) << scheme << ": " << (a - b).abs().max().item<double>();
    EXPECT_EQ(pb.perplexity, pa.perplexity) << scheme;
  } else {
    // Exact integer sums vs float sums of the same products differ in the last bits; an
    // activation that then sits on a rounding tie of the next layer's grid moves one step.
    // On this random model (weights of std 0.15) that stays well inside 1% on average.
    EXPECT_LT(((a - b).abs().mean() / a.abs().mean()).item<double>(), 1e-2) << scheme;
  }
}

INSTANTIATE_TEST_SUITE_P(Schemes, ExportSchemes,
                         ::testing::Values("w4a16-g32", "w4a16-g32-asym", "w8a16", "w8a8", "w8a8-dynamic", "fp8",
                                           "fp8-dynamic", "w4a16", "w3a16-g32", "w3a16-g16-asym", "w2a16-g16",
                                           "w8a16-g32", "w4a8-g32", "w4a8"),
                         [](const auto& info) {
                           auto n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

// Where an export's numbers part from the fake-quant model's: exported in fp32 (the
// unquantized tensors as trained; scales are bf16-representable either way, having been
// rounded through quant.scale_dtype), a weight-only export computes the fake model's logits
// bit for bit, and with static int8 activations and an fp8 KV cache only the summation
// order differs (exact int32 sums against fp32 sums of the same products; an activation on
// a rounding tie of the next grid moves one step). Exported in bf16, the default, the
// embeddings, norms and lm_head are rounded too: that rounding, not the integer arithmetic,
// is what moves a small random model's perplexity (docs/quantization.md).
TEST(Export, DifferencesFromFakeQuantComeFromTheBf16Tensors) {
  struct Case {
    std::vector<std::string> rules;
    std::string kv;
  };
  for (const auto& c : {Case{{"lm_head=none", "re:.*=w4a16-g32"}, "none"},
                        Case{{"lm_head=none", "re:.*mlp\\..*=w4a16-g16", "re:.*self_attn\\..*=w8a8"}, "fp8"}}) {
    SCOPED_TRACE(c.rules.back() + ", kv " + c.kv);
    auto m = model::load_causal_lm(testing::fixture("llama_gqa_llama3").string());
    attach_fake_quant(*m, assign_schemes(*m, parse_rules(c.rules)), FakeQuantOptions{});
    attach_kv_cache_quant(*m, config::parse_choice<config::KvCache>(c.kv, "kv_cache"));
    auto tokens = data::TokenFile::open(testing::fixture("tokens.h5").string());
    calibrate_activations(*m, [&] { m->forward(tokens.read(0, 4 * 64).view({4, 64})); });
    const auto root = testing::scratch_dir();
    export_compressed_tensors(*m, (root / "fp32").string(), {torch::kFloat32, ""});
    export_compressed_tensors(*m, (root / "bf16").string(), {torch::kBFloat16, ""});
    auto fp32 = load_for_eval((root / "fp32").string()), bf16 = load_for_eval((root / "bf16").string());
    torch::manual_seed(3);
    const auto ids = torch::randint(0, 256, {4, 64}, torch::TensorOptions().dtype(torch::kInt64));
    torch::NoGradGuard no_grad;
    const auto fake = m->forward(ids), a = fp32->forward(ids), b = bf16->forward(ids);
    const auto mean_rel = [&](const torch::Tensor& x) { return ((x - fake).abs().mean() / fake.abs().mean()).item<double>(); };
    const double p = perplexity(*m).perplexity, pa = perplexity(*fp32).perplexity, pb = perplexity(*bf16).perplexity;
    std::printf("%s kv %s: logits mean relative difference fp32 export %.3g, bf16 export %.3g; perplexity %.4f, "
                "fp32 export %+.4f%%, bf16 export %+.4f%%\n",
                c.rules.back().c_str(), c.kv.c_str(), mean_rel(a), mean_rel(b), p, 100 * (pa - p) / p, 100 * (pb - p) / p);
    if (c.kv == "none") {
      EXPECT_TRUE(a.equal(fake)) << (a - fake).abs().max().item<double>();
      EXPECT_EQ(pa, p);
    } else {
      EXPECT_LT(mean_rel(a), 1e-3);
      EXPECT_NEAR(pa, p, 1e-4 * p);
    }
    EXPECT_GT(mean_rel(b), 3 * mean_rel(a));  // the bf16 rounding dominates
  }
}

// The export stores weight and input scales in quant.scale_dtype, the dtype the simulation
// rounded them through, whatever the export dtype of the other tensors: fp32 or fp16 scales
// cast to bf16 would make the integer model differ from the one that was trained.
TEST(Export, ScalesAreStoredInTheDtypeTheSimulationRoundedThemThrough) {
  for (const auto scale_dtype : {torch::kFloat32, torch::kFloat16}) {
    SCOPED_TRACE(c10::toString(scale_dtype));
    auto m = model::load_causal_lm(testing::fixture("llama_gqa_llama3").string());
    FakeQuantOptions options;
    options.scale_dtype = scale_dtype;
    attach_fake_quant(*m, assign_schemes(*m, parse_rules({"lm_head=none", "re:.*mlp\\..*=w4a16-g32", "re:.*self_attn\\..*=w8a8"})),
                      options);
    auto tokens = data::TokenFile::open(testing::fixture("tokens.h5").string());
    calibrate_activations(*m, [&] { m->forward(tokens.read(0, 4 * 64).view({4, 64})); });
    const auto dir = testing::scratch_dir() / c10::toString(scale_dtype);
    ExportOptions bf16;
    bf16.dtype = torch::kBFloat16;
    export_compressed_tensors(*m, dir.string(), bf16);
    const auto exported = model::HFCheckpoint::open(dir.string());
    auto modules = m->named_modules("", false);
    int inputs = 0;
    torch::NoGradGuard no_grad;
    for (const auto& [name, layer] : fake_quant_layers(*m)) {
      const auto& weight = modules[name]->as<model::LinearImpl>()->weight;
      const auto scale = exported.tensor(name + ".weight_scale");
      EXPECT_EQ(scale.scalar_type(), scale_dtype) << name;
      const auto simulated = layer->weights().qparams(weight).scale.reshape({weight.size(0), -1});
      EXPECT_TRUE(scale.to(torch::kFloat32).equal(simulated)) << name;
      if (!exported.contains(name + ".input_scale")) continue;
      ++inputs;
      const auto input = exported.tensor(name + ".input_scale");
      EXPECT_EQ(input.scalar_type(), scale_dtype) << name;
      EXPECT_TRUE(input.to(torch::kFloat32).equal(layer->inputs().stored().scale.reshape({1}))) << name;
    }
    EXPECT_EQ(inputs, 8);  // q, k, v, o of 2 layers
    EXPECT_EQ(exported.tensor("model.norm.weight").scalar_type(), torch::kBFloat16);
  }
}

TEST(Export, MixedSchemesLayoutAndConfig) {
  auto m = quantized_fixture({"re:.*mlp\\..*=w4a16-g32", "re:.*self_attn\\..*=w8a8"});
  const auto dir = testing::scratch_dir() / "mixed";
  const auto summary = export_compressed_tensors(*m, dir.string(), {torch::kBFloat16, testing::fixture("llama_gqa_llama3").string()});
  const auto ck = model::HFCheckpoint::open(dir.string());
  const std::string mlp = "model.layers.0.mlp.down_proj.", attn = "model.layers.1.self_attn.k_proj.";
  // pack-quantized: int32 [out, in / 8], bf16 scales [out, in / 32], int64 shape [2]; no zero point.
  EXPECT_EQ(ck.tensor(mlp + "weight_packed").scalar_type(), torch::kInt32);
  EXPECT_EQ(ck.tensor(mlp + "weight_packed").sizes(), (std::vector<int64_t>{64, 12}));
  EXPECT_EQ(ck.tensor(mlp + "weight_scale").sizes(), (std::vector<int64_t>{64, 3}));
  EXPECT_EQ(ck.tensor(mlp + "weight_scale").scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(ck.tensor(mlp + "weight_shape").equal(torch::tensor({64, 96}, torch::kInt64)));
  EXPECT_FALSE(ck.contains(mlp + "weight_zero_point"));
  EXPECT_FALSE(ck.contains(mlp + "weight"));
  // int-quantized: int8 [out, in], channel scales [out, 1], static input scale [1].
  EXPECT_EQ(ck.tensor(attn + "weight").scalar_type(), torch::kInt8);
  EXPECT_EQ(ck.tensor(attn + "weight").sizes(), (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(ck.tensor(attn + "weight_scale").sizes(), (std::vector<int64_t>{32, 1}));
  EXPECT_EQ(ck.tensor(attn + "input_scale").sizes(), (std::vector<int64_t>{1}));
  EXPECT_EQ(ck.tensor("lm_head.weight").scalar_type(), torch::kBFloat16);
  // q/k/v of a layer share one input scale (vLLM keeps one for the fused GEMM)...
  // ...here they are calibrated on the same input, so they agree exactly.
  EXPECT_TRUE(ck.tensor("model.layers.1.self_attn.q_proj.input_scale").equal(ck.tensor(attn + "input_scale")));
  // config.json
  std::ifstream in(dir / "config.json");
  const auto config = nlohmann::json::parse(in);
  const auto& qc = config["quantization_config"];
  EXPECT_EQ(qc["quant_method"], "compressed-tensors");
  EXPECT_EQ(qc["format"], "mixed-precision");
  EXPECT_EQ(qc["quantization_status"], "compressed");
  EXPECT_EQ(qc["ignore"], nlohmann::json::array({"lm_head"}));
  EXPECT_EQ(qc["config_groups"].size(), 2u);
  for (const auto& [name, group] : qc["config_groups"].items()) {
    EXPECT_TRUE(group["output_activations"].is_null());
    if (group["format"] == "pack-quantized") {
      EXPECT_EQ(group["weights"]["num_bits"], 4);
      EXPECT_EQ(group["weights"]["group_size"], 32);
      EXPECT_EQ(group["weights"]["strategy"], "group");
      EXPECT_TRUE(group["input_activations"].is_null());
      EXPECT_EQ(group["targets"].size(), 6u);
    } else {
      EXPECT_EQ(group["format"], "int-quantized");
      EXPECT_EQ(group["input_activations"]["strategy"], "tensor");
      EXPECT_FALSE(group["input_activations"]["dynamic"].get<bool>());
      EXPECT_EQ(group["targets"].size(), 8u);
    }
  }
  // Sizes: int4 g32 costs 4 + 16/32 bits per weight (plus 16 bytes of weight_shape).
  EXPECT_GT(summary.bits_per_quantized_weight(), 4.5);
  EXPECT_TRUE(std::filesystem::exists(dir / "generation_config.json"));  // copied through
}

TEST(Export, ObserversGiveNestedRanges) {
  // The clipping observers keep at most the min-max range, and the running average of the
  // batches' ranges (one rank: the last batches weigh most) is within it; each evaluates.
  std::map<std::string, double> scale;
  for (const auto* kind : {"minmax", "ema", "percentile", "mse"}) {
    auto m = quantized_fixture({"re:.*self_attn\\..*=w8a8"}, kind);
    const auto layers = fake_quant_layers(*m);
    scale[kind] = layers.at("model.layers.0.self_attn.q_proj")->inputs().stored().scale.item<double>();
    EXPECT_GT(scale[kind], 0) << kind;
    EXPECT_TRUE(std::isfinite(perplexity(*m).perplexity)) << kind;
  }
  EXPECT_LE(scale["ema"], scale["minmax"]);
  EXPECT_LT(scale["percentile"], scale["minmax"]);
  EXPECT_LT(scale["mse"], scale["minmax"]);
}

TEST(Export, Fp8KvCacheIsExportedAndEvaluated) {
  auto m = model::load_causal_lm(testing::fixture("llama_gqa_llama3").string());
  attach_fake_quant(*m, assign_schemes(*m, parse_rules({"re:.*=w8a16"})), FakeQuantOptions{});
  attach_kv_cache_quant(*m, config::KvCache::fp8);
  auto tokens = data::TokenFile::open(testing::fixture("tokens.h5").string());
  calibrate_activations(*m, [&] { m->forward(tokens.read(0, 4 * 64).view({4, 64})); });
  const auto kv = kv_cache_quantizers(*m);
  ASSERT_EQ(kv.size(), 2u);
  EXPECT_TRUE(kv[0]->frozen());
  const auto dir = testing::scratch_dir() / "kv";
  export_compressed_tensors(*m, dir.string(), {torch::kBFloat16, ""});
  const auto ck = model::HFCheckpoint::open(dir.string());
  EXPECT_EQ(ck.tensor("model.layers.1.self_attn.k_scale").sizes(), (std::vector<int64_t>{1}));
  EXPECT_FLOAT_EQ(ck.tensor("model.layers.1.self_attn.v_scale").item<float>(), kv[1]->values().scale.item<float>());
  std::ifstream in(dir / "config.json");
  const auto qc = nlohmann::json::parse(in)["quantization_config"];
  EXPECT_EQ(qc["kv_cache_scheme"]["type"], "float");
  EXPECT_EQ(qc["kv_cache_scheme"]["strategy"], "tensor");
  auto integer = load_for_eval(dir.string());
  EXPECT_EQ(kv_cache_quantizers(*integer).size(), 2u);
  const auto pa = perplexity(*m).perplexity, pb = perplexity(*integer).perplexity;
  EXPECT_NEAR(pb, pa, 0.005 * pa);
}

TEST(Export, Int8KvCacheQuantizesKeysPerChannelAndValuesPerToken) {
  auto m = model::load_causal_lm(testing::fixture("llama_gqa_llama3").string());
  const auto base = perplexity(*m).perplexity;  // float keys and values
  attach_kv_cache_quant(*m, config::KvCache::int8);
  EXPECT_THROW(perplexity(*m), c10::Error);  // static key scales are used only once calibrated
  auto tokens = data::TokenFile::open(testing::fixture("tokens.h5").string());
  calibrate_activations(*m, [&] { m->forward(tokens.read(0, 4 * 64).view({4, 64})); });
  const auto kv = kv_cache_quantizers(*m);
  EXPECT_EQ(kv[0]->keys().scale.sizes(), (std::vector<int64_t>{2, 16}));  // kv heads x head_dim
  const auto quantized = perplexity(*m).perplexity;
  EXPECT_NE(quantized, base);
  EXPECT_NEAR(quantized, base, 0.02 * base);  // int8 KV costs little
}

TEST(Export, FusedLayersMustShareAScheme) {
  auto m = model::load_causal_lm(testing::fixture("llama_gqa_llama3").string());
  EXPECT_THROW(assign_schemes(*m, parse_rules({"re:.*q_proj=w8a8", "re:.*=w4a16-g32"})), Error);
  EXPECT_THROW(parse_rules({"re:.*=w5a16"}), Error);
  EXPECT_THROW(parse_rules({"nothing"}), Error);
}

// Above max_shard_bytes the export streams into model-0000K-of-0000N.safetensors with an
// index, as transformers shards: every tensor once, within its shard's limit (but for one
// tensor larger than it), the index's total_size the sum; loading it back evaluates to the
// single-file export's logits exactly. The gather hook sees the root unit first, then each
// decoder layer, each released before the next is gathered. A re-export in one file removes
// the shards, and the partial shards of a writer that failed.
TEST(Export, LargeExportsAreShardedWithAnIndexAndLoadTheSame) {
  auto fake = quantized_fixture({"lm_head=none", "re:.*mlp.*=w4a16-g32", "re:.*self_attn.*=w8a8"});
  const auto root = testing::scratch_dir();
  export_compressed_tensors(*fake, (root / "single").string());
  ExportOptions options;
  options.max_shard_bytes = 24 << 10;
  std::vector<std::pair<int, bool>> calls;
  options.gather = [&](int unit, bool gathered) { calls.emplace_back(unit, gathered); };
  const auto sharded = root / "sharded";
  const auto summary = export_compressed_tensors(*fake, sharded.string(), options);
  EXPECT_EQ(calls, (std::vector<std::pair<int, bool>>{{-1, true}, {-1, false}, {0, true}, {0, false}, {1, true}, {1, false}}));
  EXPECT_EQ(summary.errors.size(), 14u);
  EXPECT_FALSE(std::filesystem::exists(sharded / "model.safetensors"));
  const auto index = nlohmann::json::parse(testing::read_text(sharded / "model.safetensors.index.json"));
  const auto single = model::SafetensorsFile::open((root / "single/model.safetensors").string());
  std::map<std::string, int64_t> shard_bytes;
  int64_t total = 0;
  for (const auto& e : single->entries()) {
    ASSERT_TRUE(index["weight_map"].contains(e.name)) << e.name;
    shard_bytes[index["weight_map"][e.name].get<std::string>()] += static_cast<int64_t>(e.end - e.begin);
    total += static_cast<int64_t>(e.end - e.begin);
  }
  EXPECT_EQ(index["weight_map"].size(), single->entries().size());
  EXPECT_EQ(index["metadata"]["total_size"].get<int64_t>(), total);
  const auto n = shard_bytes.size();
  ASSERT_GT(n, 3u);
  char last[64];
  std::snprintf(last, sizeof(last), "model-%05zu-of-%05zu.safetensors", n, n);
  EXPECT_TRUE(shard_bytes.count(last));
  const int64_t largest = 2 * 256 * 64 * 2;  // bf16 embeddings (and lm_head), alone in their shards
  for (const auto& [file, bytes] : shard_bytes) EXPECT_LE(bytes, std::max<int64_t>(options.max_shard_bytes, largest)) << file;
  auto a = load_for_eval((root / "single").string()), b = load_for_eval(sharded.string());
  const auto ids = torch::randint(0, 256, {2, 32}, torch::TensorOptions().dtype(torch::kInt64));
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(a->forward(ids).equal(b->forward(ids)));
  std::ofstream(sharded / "model-7.partial.safetensors") << "left by a writer that failed";
  export_compressed_tensors(*fake, sharded.string());  // again, in one file; the stale partial shard goes
  EXPECT_TRUE(std::filesystem::exists(sharded / "model.safetensors"));
  for (const auto& entry : std::filesystem::directory_iterator(sharded))
    EXPECT_EQ(entry.path().filename().string().find("model-"), std::string::npos) << entry.path();
  EXPECT_FALSE(std::filesystem::exists(sharded / "model.safetensors.index.json"));
}

}  // namespace
}  // namespace qtrain::quant
