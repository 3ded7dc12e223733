// qeval on compressed-tensors folders that do not describe their tensors (issues 24 and 25,
// and the compressed_config fuzz target's first finding): each damaged copy of a real export
// (tests/fixtures/llama_gqa_llama3, int4 g32 MLPs with asymmetric attention, w8a8 o_proj and
// an FP8 KV cache) exits with status 2 and one line naming the file and the key; the
// undamaged export evaluates.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>

#include "config/choices.h"
#include "data/token_file.h"
#include "model/hf_checkpoint.h"
#include "model/safetensors.h"
#include "quant/export.h"
#include "quant/kv_cache_quant.h"
#include "quant/quantized_model.h"
#include "tests/test_util.h"

namespace qtrain {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The export every case damages, made once per test binary.
const fs::path& pristine_export() {
  static const fs::path dir = [] {
    const auto d = testing::binary_dir() / "test-scratch" / "QevalBadExport.pristine";
    remove_tree(d.string());
    auto m = model::load_causal_lm(testing::fixture("llama_gqa_llama3").string());
    quant::attach_fake_quant(*m,
                             quant::assign_schemes(*m, quant::parse_rules({"lm_head=none", "re:.*mlp\\..*=w4a16-g32",
                                                                          "re:.*o_proj=w8a8",
                                                                          "re:.*self_attn\\..*=w4a16-g32-asym"})),
                             {});
    quant::attach_kv_cache_quant(*m, config::KvCache::fp8);
    auto tokens = data::TokenFile::open(testing::fixture("tokens.h5").string());
    quant::calibrate_activations(*m, [&] { m->forward(tokens.read(0, 4 * 64).view({4, 64})); });
    quant::export_compressed_tensors(*m, d.string(), {torch::kBFloat16, ""});
    return d;
  }();
  return dir;
}

struct Damage {
  std::string name;
  std::function<void(json& config, model::NamedTensors& tensors)> apply;
  std::string expected;  // in the error line, beside the file
};

// Every tensor of the export's single weight file, copied; `raw` gets the element types that
// this LibTorch holds only as bytes (F8 on 1.13), for save_safetensors to write them back.
model::NamedTensors read_all(const fs::path& file, std::map<std::string, std::string>& raw) {
  const auto st = model::SafetensorsFile::open(file.string());
  model::NamedTensors out;
  for (const auto& e : st->entries()) {
    if (e.dtype->torch_type) {
      out.emplace_back(e.name, st->tensor(e.name).clone());
    } else {
      out.emplace_back(e.name, st->raw_bytes(e.name).reshape(e.shape).clone());
      raw[e.name] = e.dtype->name;
    }
  }
  return out;
}

torch::Tensor& tensor(model::NamedTensors& ts, const std::string& name) {
  for (auto& [n, t] : ts)
    if (n == name) return t;
  throw std::runtime_error("no tensor " + name);
}

json& group_of(json& config, const std::string& target) {
  for (auto& [name, g] : config["quantization_config"]["config_groups"].items())
    for (const auto& t : g["targets"])
      if (t == target) return g;
  throw std::runtime_error("no group for " + target);
}

class QevalBadExport : public ::testing::TestWithParam<Damage> {};

TEST_P(QevalBadExport, ExitsWithStatus2NamingTheKey) {
  const auto& damage = GetParam();
  const auto dir = testing::scratch_dir();
  const auto folder = dir / "export";
  fs::copy(pristine_export(), folder);
  auto config = json::parse(testing::read_text(folder / "config.json"));
  std::map<std::string, std::string> raw;
  auto tensors = read_all(folder / "model.safetensors", raw);
  damage.apply(config, tensors);
  std::ofstream(folder / "config.json", std::ios::trunc) << config.dump(2);
  model::save_safetensors((folder / "model.safetensors").string(), tensors, {{"format", "pt"}}, raw);
  const auto run = testing::run_tool(dir, "qeval",
                                     "--model '" + folder.string() + "' --data tests/fixtures/tokens.h5 --seq-len 64 --device cpu");
  EXPECT_EQ(run.status, 2) << run.out << run.err;
  EXPECT_NE(run.err.find(damage.expected), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("export"), std::string::npos) << run.err;  // the file
}

const std::string kMlp = "model.layers.0.mlp.down_proj", kQ = "model.layers.0.self_attn.q_proj",
                  kO = "model.layers.1.self_attn.o_proj";

INSTANTIATE_TEST_SUITE_P(
    Cases, QevalBadExport,
    ::testing::Values(
        Damage{"num_bits_0", [](json& c, auto&) { group_of(c, kMlp)["weights"]["num_bits"] = 0; }, "weights.num_bits"},
        Damage{"num_bits_2_on_int4_codes", [](json& c, auto&) { group_of(c, kMlp)["weights"]["num_bits"] = 2; },
               ".weight_packed"},
        Damage{"num_bits_3_on_int4_codes", [](json& c, auto&) { group_of(c, kMlp)["weights"]["num_bits"] = 3; },
               ".weight_packed"},
        Damage{"group_size_not_dividing", [](json& c, auto&) { group_of(c, kMlp)["weights"]["group_size"] = 24; },
               "group_size"},
        Damage{"group_size_of_other_scales", [](json& c, auto&) { group_of(c, kMlp)["weights"]["group_size"] = 16; },
               kMlp + ".weight_scale"},
        Damage{"channel_strategy_on_group_scales",
               [](json& c, auto&) { group_of(c, kMlp)["weights"]["strategy"] = "channel"; }, kMlp + ".weight_scale"},
        Damage{"asymmetric_without_zero_points",
               [](json& c, auto&) { group_of(c, kMlp)["weights"]["symmetric"] = false; }, ".weight_zero_point"},
        Damage{"symmetric_with_zero_points", [](json& c, auto&) { group_of(c, kQ)["weights"]["symmetric"] = true; },
               ".weight_zero_point"},
        Damage{"unknown_strategy", [](json& c, auto&) { group_of(c, kMlp)["weights"]["strategy"] = "diagonal"; },
               "weights.strategy"},
        Damage{"missing_weights", [](json& c, auto&) { group_of(c, kMlp).erase("weights"); }, ".weights"},
        Damage{"non_string_target", [](json& c, auto&) { group_of(c, kMlp)["targets"].push_back(7); }, "targets["},
        Damage{"target_in_two_groups",
               [](json& c, auto&) {
                 auto& groups = c["quantization_config"]["config_groups"];
                 json copy = group_of(c, kMlp);
                 groups["group_copy"] = copy;
               },
               "claimed by config group"},
        Damage{"unknown_format", [](json& c, auto&) { group_of(c, kMlp)["format"] = "marlin-24"; }, ".format"},
        Damage{"int_quantized_with_float_weights",
               [](json& c, auto&) { group_of(c, kO)["weights"]["type"] = "float"; }, ".format"},
        Damage{"kv_cache_int8", [](json& c, auto&) { c["quantization_config"]["kv_cache_scheme"]["type"] = "int"; },
               "kv_cache_scheme"},
        Damage{"nan_weight_scale",
               [](json&, model::NamedTensors& t) {
                 tensor(t, kMlp + ".weight_scale")[0][0] = std::numeric_limits<float>::quiet_NaN();
               },
               kMlp + ".weight_scale"},
        Damage{"negative_input_scale",
               [](json&, model::NamedTensors& t) { tensor(t, kO + ".input_scale").fill_(-1.0); }, kO + ".input_scale"},
        Damage{"infinite_kv_scale",
               [](json&, model::NamedTensors& t) {
                 tensor(t, "model.layers.1.self_attn.v_scale").fill_(std::numeric_limits<float>::infinity());
               },
               "model.layers.1.self_attn.v_scale"},
        Damage{"int8_codes_beyond_the_grid",
               [](json& c, model::NamedTensors&) { group_of(c, kO)["weights"]["num_bits"] = 4; }, "o_proj.weight"},
        Damage{"wrong_weight_shape",
               [](json&, model::NamedTensors& t) { tensor(t, kMlp + ".weight_shape")[1] = 32; }, kMlp + ".weight_shape"},
        Damage{"tensor_no_module_uses",
               [](json&, model::NamedTensors& t) { t.emplace_back("model.layers.0.mlp.extra", torch::zeros({3})); },
               "model.layers.0.mlp.extra"},
        Damage{"missing_input_scale",
               [](json&, model::NamedTensors& t) {
                 for (auto it = t.begin(); it != t.end(); ++it)
                   if (it->first == kO + ".input_scale") {
                     t.erase(it);
                     break;
                   }
               },
               kO + ".input_scale"}),
    [](const auto& info) { return info.param.name; });

// A config.json with the same key twice in one object (JSON allows it; the last would win
// silently): refused, naming the key. Written as text, as no JSON library writes it.
TEST(QevalBadExportText, DuplicateKeysInOneObjectAreRefused) {
  const auto dir = testing::scratch_dir();
  const auto folder = dir / "export";
  fs::copy(pristine_export(), folder);
  auto text = testing::read_text(folder / "config.json");
  const std::string groups = "\"config_groups\": {";
  const auto at = text.find(groups);
  ASSERT_NE(at, std::string::npos) << text;
  // A first "group_0" that the real one after it would silently replace.
  text.insert(at + groups.size(), "\"group_0\": {\"targets\": [\"x\"], \"weights\": {\"num_bits\": 4}},");
  std::ofstream(folder / "config.json", std::ios::trunc) << text;
  const auto run = testing::run_tool(dir, "qeval",
                                     "--model '" + folder.string() + "' --data tests/fixtures/tokens.h5 --seq-len 64 --device cpu");
  EXPECT_EQ(run.status, 2) << run.err;
  EXPECT_NE(run.err.find("occurs twice"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("group_0"), std::string::npos) << run.err;
}

TEST(QevalBadExportText, TheUndamagedExportEvaluates) {
  const auto dir = testing::scratch_dir();
  const auto run = testing::run_tool(dir, "qeval",
                                     "--model '" + pristine_export().string() +
                                         "' --data tests/fixtures/tokens.h5 --seq-len 64 --device cpu --json");
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_GT(json::parse(run.out)["perplexity"].get<double>(), 1.0);
}

}  // namespace
}  // namespace qtrain
