// HF checkpoint folders: load -> save -> load is exact (single file and shards, tied and
// untied), and defective folders are rejected naming the file and the key.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "model/hf_checkpoint.h"
#include "tests/test_util.h"

namespace qtrain::model {
namespace {

namespace fs = std::filesystem;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

void write_json(const fs::path& p, const nlohmann::json& j) { std::ofstream(p) << j.dump(2); }

// Copies a fixture folder into a scratch directory so that a test may damage it.
fs::path copy_fixture(const std::string& name) {
  auto dir = testing::scratch_dir() / name;
  fs::copy(testing::fixture(name), dir, fs::copy_options::recursive);
  return dir;
}

void expect_same_tensors(const HFCheckpoint& a, const HFCheckpoint& b) {
  ASSERT_EQ(a.tensor_names(), b.tensor_names());
  for (const auto& name : a.tensor_names()) {
    EXPECT_EQ(a.tensor(name).scalar_type(), b.tensor(name).scalar_type()) << name;
    EXPECT_TRUE(a.tensor(name).equal(b.tensor(name))) << name;
  }
}

class RoundTrip : public ::testing::TestWithParam<std::string> {};

TEST_P(RoundTrip, LoadSaveLoadIsExact) {
  const auto original = HFCheckpoint::open(testing::fixture(GetParam()).string());
  const auto out = testing::scratch_dir() / "saved";
  NamedTensors tensors;
  for (const auto& name : original.tensor_names()) tensors.emplace_back(name, original.tensor(name));
  save_hf_checkpoint(out.string(), original.config(), tensors);
  const auto saved = HFCheckpoint::open(out.string());
  expect_same_tensors(original, saved);
  EXPECT_EQ(saved.config().to_json(), original.config().to_json());
}

INSTANTIATE_TEST_SUITE_P(Fixtures, RoundTrip,
                         ::testing::Values("llama_gqa_llama3", "llama_headdim_tied", "qwen2_bias", "mistral_linear"));

TEST(HFCheckpoint, ModelSaveWritesShardsAndLeavesTiedHeadOut) {
  auto model = load_causal_lm(testing::fixture("llama_headdim_tied").string());
  const auto out = testing::scratch_dir() / "sharded";
  SaveOptions options;
  options.max_shard_bytes = 20000;
  save_causal_lm(*model, out.string(), options);
  EXPECT_TRUE(fs::exists(out / "model.safetensors.index.json"));
  EXPECT_FALSE(fs::exists(out / "model.safetensors"));
  const auto saved = HFCheckpoint::open(out.string());
  EXPECT_FALSE(saved.contains("lm_head.weight"));
  auto reloaded = load_causal_lm(out.string());
  const auto ids = torch::randint(0, 256, {1, 16}, torch::kInt64);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(model->forward(ids).equal(reloaded->forward(ids)));
  // The index's total_size counts every tensor byte.
  int64_t total = 0;
  for (const auto& name : saved.tensor_names()) total += stored_bytes(saved.tensor(name));
  EXPECT_EQ(read_json(out / "model.safetensors.index.json")["metadata"]["total_size"].get<int64_t>(), total);
}

TEST(HFCheckpoint, SavingBf16ConvertsFloatsAndRecordsTheDtype) {
  auto model = load_causal_lm(testing::fixture("qwen2_bias").string());
  const auto out = testing::scratch_dir() / "bf16";
  SaveOptions options;
  options.dtype = torch::kBFloat16;
  save_causal_lm(*model, out.string(), options);
  const auto saved = HFCheckpoint::open(out.string());
  EXPECT_EQ(saved.tensor("model.norm.weight").scalar_type(), torch::kBFloat16);
  EXPECT_EQ(read_json(out / "config.json")["dtype"], "bfloat16");
}

TEST(HFCheckpoint, DefectsNameTheFileAndKey) {
  {  // a tensor the index promises is absent from the model
    const auto dir = copy_fixture("qwen2_bias");
    auto cfg = read_json(dir / "config.json");
    cfg["num_hidden_layers"] = 3;
    write_json(dir / "config.json", cfg);
    EXPECT_NE(error_of([&] { load_causal_lm(dir.string()); }).find("key 'model.layers.2."), std::string::npos);
  }
  {  // an extra tensor the config has no place for
    const auto dir = copy_fixture("qwen2_bias");
    auto cfg = read_json(dir / "config.json");
    cfg["num_hidden_layers"] = 1;
    write_json(dir / "config.json", cfg);
    EXPECT_NE(error_of([&] { load_causal_lm(dir.string()); }).find("unexpected tensor"), std::string::npos);
  }
  {  // a shape that disagrees with the config
    const auto dir = copy_fixture("qwen2_bias");
    auto cfg = read_json(dir / "config.json");
    cfg["intermediate_size"] = 128;
    write_json(dir / "config.json", cfg);
    const auto e = error_of([&] { load_causal_lm(dir.string()); });
    EXPECT_NE(e.find("does not match the config"), std::string::npos) << e;
    EXPECT_NE(e.find("model.safetensors"), std::string::npos) << e;
  }
  {  // the index names a shard that is missing
    const auto dir = copy_fixture("llama_gqa_llama3");
    fs::remove(dir / "model-00003-of-00012.safetensors");
    EXPECT_NE(error_of([&] { HFCheckpoint::open(dir.string()); }).find("model-00003-of-00012.safetensors"),
              std::string::npos);
  }
  {  // a truncated shard
    const auto dir = copy_fixture("llama_gqa_llama3");
    const auto shard = dir / "model-00001-of-00012.safetensors";
    fs::resize_file(shard, fs::file_size(shard) - 100);
    EXPECT_NE(error_of([&] { HFCheckpoint::open(dir.string()); }).find("outside the data section"), std::string::npos);
  }
  {  // no weights at all
    const auto dir = copy_fixture("qwen2_bias");
    fs::remove(dir / "model.safetensors");
    EXPECT_NE(error_of([&] { HFCheckpoint::open(dir.string()); }).find("no model.safetensors"), std::string::npos);
  }
}

struct ConfigDefect {
  const char* name;
  const char* key;
  nlohmann::json value;  // null: remove the key
  const char* message;
};

void PrintTo(const ConfigDefect& d, std::ostream* os) { *os << d.name; }

class ConfigDefects : public ::testing::TestWithParam<ConfigDefect> {};

TEST_P(ConfigDefects, AreRejectedNamingTheKey) {
  const auto& d = GetParam();
  auto cfg = read_json(testing::fixture("llama_gqa_llama3/config.json"));
  if (d.value.is_null()) cfg.erase(d.key);
  else cfg[d.key] = d.value;
  const auto e = error_of([&] { ModelConfig::from_json(cfg, "config.json"); });
  EXPECT_EQ(e.rfind("config.json: key '", 0), 0u) << e;
  EXPECT_NE(e.find(d.message), std::string::npos) << e;
}

INSTANTIATE_TEST_SUITE_P(
    Catalogue, ConfigDefects,
    ::testing::Values(ConfigDefect{"model_type", "model_type", "gpt2", "unsupported model_type"},
                      ConfigDefect{"missing_hidden", "hidden_size", nullptr, "missing required key"},
                      ConfigDefect{"wrong_type", "vocab_size", "many", "wrong type"},
                      ConfigDefect{"zero_heads", "num_attention_heads", 0, "must be positive"},
                      ConfigDefect{"kv_not_divisor", "num_key_value_heads", 3, "not a multiple"},
                      ConfigDefect{"activation", "hidden_act", "gelu", "unsupported activation"},
                      ConfigDefect{"rope_type", "rope_parameters", {{"rope_type", "yarn"}, {"factor", 4.0}},
                                   "unsupported rope type"},
                      // issue 25 / the model_config fuzz target: non-integer and out-of-range sizes
                      ConfigDefect{"fractional_size", "hidden_size", 64.5, "wrong type"},
                      ConfigDefect{"size_beyond_int64", "num_hidden_layers", 6.5e124, "wrong type"},
                      ConfigDefect{"unsigned_beyond_int64", "intermediate_size", 18446744073709551615ull, "wrong type"},
                      // issue 24: physically impossible values (an eps of 0 makes a zero row NaN)
                      ConfigDefect{"zero_eps", "rms_norm_eps", 0.0, "rms_norm_eps is 0"},
                      ConfigDefect{"negative_eps", "rms_norm_eps", -1e-6, "rms_norm_eps is"},
                      ConfigDefect{"zero_positions", "max_position_embeddings", 0, "must be positive"},
                      // issue 24, second round: the rope keys and the window (a non-string type
                      // was a JSON type_error, status 1; the others were accepted)
                      ConfigDefect{"rope_type_not_string", "rope_parameters", {{"rope_type", 3}, {"factor", 4.0}},
                                   "key 'rope_type': wrong type: 3"},
                      ConfigDefect{"zero_low_freq_factor", "rope_parameters",
                                   {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 0.0},
                                    {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}},
                                   "key 'rope_parameters.low_freq_factor': must be positive"},
                      ConfigDefect{"zero_original_positions", "rope_parameters",
                                   {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                                    {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 0}},
                                   "key 'rope_parameters.original_max_position_embeddings': must be positive"},
                      // issue 25: sizes beyond any model (LibTorch was asked for petabytes)
                      ConfigDefect{"layers_1e8", "num_hidden_layers", 1e8, "is 100000000, beyond any model"},
                      ConfigDefect{"hidden_2_40", "hidden_size", 1099511627776, "beyond any model"},
                      ConfigDefect{"vocab_2_30", "vocab_size", 1073741824, "beyond any model"}),
    [](const auto& info) { return std::string(info.param.name); });

// A sliding window of 0 tokens (with use_sliding_window on) would mask every key: refused.
TEST(ModelConfig, AZeroSlidingWindowIsRefused) {
  auto cfg = read_json(testing::fixture("llama_gqa_llama3/config.json"));
  cfg["use_sliding_window"] = true;
  cfg["sliding_window"] = 0;
  const auto e = error_of([&] { ModelConfig::from_json(cfg, "config.json"); });
  EXPECT_EQ(e, "config.json: key 'sliding_window': must be positive, got 0 (expected: integer > 0 or null)");
}

// config.json naming a key twice: nlohmann keeps the last, Python's json too, but a file
// that says two things is refused (as safetensors headers are).
TEST(ModelConfig, AKeyTwiceInConfigJsonIsRefused) {
  const auto dir = testing::scratch_dir();
  auto text = testing::read_text(testing::fixture("llama_gqa_llama3/config.json"));
  text.insert(text.find('{') + 1, "\"hidden_size\": 32,");
  std::ofstream(dir / "config.json") << text;
  const auto e = error_of([&] { ModelConfig::from_file((dir / "config.json").string()); });
  EXPECT_NE(e.find("config.json"), std::string::npos) << e;
  EXPECT_NE(e.find("hidden_size"), std::string::npos) << e;
  EXPECT_NE(e.find("twice"), std::string::npos) << e;
}

// A size written as a float that holds an integer exactly (some exporters write 4096.0)
// reads as that integer.
TEST(ModelConfig, IntegralFloatSizesAreIntegers) {
  auto cfg = read_json(testing::fixture("llama_gqa_llama3/config.json"));
  cfg["intermediate_size"] = 96.0;
  EXPECT_EQ(ModelConfig::from_json(cfg, "config.json").intermediate_size, 96);
}

TEST(ModelConfig, ReadsOlderRopeScalingAndThetaKeys) {
  auto cfg = read_json(testing::fixture("llama_gqa_llama3/config.json"));
  const auto params = cfg["rope_parameters"];
  cfg.erase("rope_parameters");
  cfg["rope_theta"] = params["rope_theta"];
  cfg["rope_scaling"] = {{"type", "llama3"}, {"factor", params["factor"]}, {"low_freq_factor", params["low_freq_factor"]},
                         {"high_freq_factor", params["high_freq_factor"]},
                         {"original_max_position_embeddings", params["original_max_position_embeddings"]}};
  const auto older = ModelConfig::from_json(cfg, "older.json");
  const auto newer = ModelConfig::from_file(testing::fixture("llama_gqa_llama3/config.json").string());
  EXPECT_TRUE(older.rope == newer.rope);
  EXPECT_EQ(older.rope.type, "llama3");
  EXPECT_DOUBLE_EQ(older.rope.theta, 500000.0);
}

}  // namespace
}  // namespace qtrain::model
