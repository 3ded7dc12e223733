// compressed-tensors reader: config groups -> per-linear IntLinear, the rest as usual.
#include "quant/load_compressed.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "quant/compressed_tensors.h"
#include "quant/fp8.h"
#include "quant/int_linear.h"
#include "quant/kv_cache_quant.h"
#include "quant/pack_quantized.h"
#include "quant/quantized_model.h"

namespace qtrain::quant {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json read_config(const std::string& dir) {
  std::ifstream in(fs::path(dir) / "config.json");
  if (!in) return json::object();
  try {
    return json::parse(in);
  } catch (const json::exception&) {
    return json::object();  // HFCheckpoint::open reports it properly
  }
}

QuantArgs args_from_json(const json& j, const std::string& where) {
  try {
    QuantArgs a;
    a.num_bits = j.at("num_bits").get<int>();
    a.type = j.value("type", std::string("int"));
    a.symmetric = j.value("symmetric", true);
    // bool, or "local" (a dynamic variant) in recent compressed-tensors
    a.dynamic = j.contains("dynamic") && (j["dynamic"].is_string() || (j["dynamic"].is_boolean() && j["dynamic"].get<bool>()));
    a.strategy = strategy_from_string(j.at("strategy").get<std::string>());
    if (a.strategy == Strategy::group) a.group_size = j.at("group_size").get<int64_t>();
    return a;
  } catch (const json::exception& e) {
    throw Error(std::string("malformed quantization args: ") + e.what()).key(where);
  }
}

IntLinearTensors read_linear(const model::HFCheckpoint& ck, const std::string& name, const std::string& format,
                             const QuantArgs& w, const std::optional<QuantArgs>& in) {
  IntLinearTensors t;
  t.format = format;
  t.weights = w;
  t.input_activations = in;
  const std::string p = name + ".";
  t.weight_scale = ck.tensor(p + ct::kWeightScale).to(torch::kFloat32);
  if (t.weight_scale.dim() == 1) t.weight_scale = t.weight_scale.reshape({-1, 1});
  if (format == ct::kPackQuantized) {
    const auto shape = ck.tensor(p + ct::kWeightShape).to(torch::kInt64);
    const auto out = shape[0].item<int64_t>(), in_features = shape[1].item<int64_t>();
    t.weight_q = unpack_from_int32(ck.tensor(p + ct::kWeightPacked), w.num_bits, in_features);
    if (t.weight_q.size(0) != out) throw Error("weight_packed rows differ from weight_shape").file(ck.dir()).key(p + ct::kWeightPacked);
    if (ck.contains(p + ct::kWeightZeroPoint))
      t.weight_zero_point = unpack_from_int32(ck.tensor(p + ct::kWeightZeroPoint), w.num_bits, out, 0);
  } else if (format == ct::kIntQuantized) {
    t.weight_q = ck.tensor(p + ct::kWeight).clone();
    if (ck.contains(p + ct::kWeightZeroPoint)) t.weight_zero_point = ck.tensor(p + ct::kWeightZeroPoint);
  } else if (format == ct::kFloatQuantized) {
    t.weight_q = decode_fp8_e4m3(ck.file_of(p + ct::kWeight).raw_bytes(p + ct::kWeight))
                     .reshape(ck.file_of(p + ct::kWeight).entry(p + ct::kWeight).shape);
  } else {
    throw Error("unsupported compressed-tensors format '" + format + "'").file(ck.dir()).key("quantization_config.format")
        .expected("pack-quantized, int-quantized or float-quantized");
  }
  if (in && !in->dynamic) {
    t.input_scale = ck.tensor(p + ct::kInputScale);
    if (ck.contains(p + ct::kInputZeroPoint)) t.input_zero_point = ck.tensor(p + ct::kInputZeroPoint);
  }
  return t;
}

}  // namespace

bool is_compressed_tensors(const std::string& dir) {
  const auto config = read_config(dir);
  return config.contains("quantization_config") &&
         config["quantization_config"].value("quant_method", std::string()) == ct::kQuantMethod;
}

model::CausalLM load_for_eval(const std::string& dir, const model::LoadOptions& options) {
  if (!is_compressed_tensors(dir)) return model::load_causal_lm(dir, options);
  const auto ck = model::HFCheckpoint::open(dir);
  const auto qc = read_config(dir)["quantization_config"];
  const auto config_path = (fs::path(dir) / "config.json").string();
  model::CausalLM model(ck.config());
  std::set<std::string> claimed;
  for (const auto& [group_name, group] : qc.at("config_groups").items()) {
    const auto where = "quantization_config.config_groups." + group_name;
    const auto format = group.value("format", qc.value("format", std::string()));
    const auto w = args_from_json(group.at("weights"), where + ".weights");
    std::optional<QuantArgs> in;
    if (group.contains("input_activations") && !group["input_activations"].is_null())
      in = args_from_json(group["input_activations"], where + ".input_activations");
    for (const auto& target : group.at("targets")) {
      const auto name = target.get<std::string>();
      auto modules = model->named_modules("", false);
      if (!modules.contains(name) || !modules[name]->as<model::LinearImpl>())
        throw Error("target '" + name + "' is not a linear layer of this model").file(config_path).key(where + ".targets");
      modules[name]->as<model::LinearImpl>()->set_wrapper("int", std::make_shared<IntLinear>(read_linear(ck, name, format, w, in)));
      claimed.insert(name + ".weight");
    }
  }
  torch::NoGradGuard no_grad;
  if (qc.contains("kv_cache_scheme") && qc["kv_cache_scheme"].is_object()) {
    if (qc["kv_cache_scheme"].value("type", std::string()) != "float")
      throw Error("only FP8 KV-cache scales are read").file(config_path).key("quantization_config.kv_cache_scheme").expected("type float");
    attach_kv_cache_quant(*model, config::KvCache::fp8);
    int64_t layer = 0;
    for (auto* kv : kv_cache_quantizers(*model)) {
      const auto prefix = "model.layers." + std::to_string(layer++) + ".self_attn.";
      kv->keys().set({ck.tensor(prefix + ct::kKeyScale).to(torch::kFloat32), {}});
      kv->values().set({ck.tensor(prefix + ct::kValueScale).to(torch::kFloat32), {}});
    }
  }
  for (auto& item : model->named_parameters()) {
    if (claimed.count(item.key())) {
      item.value().set_data(torch::empty({0}));  // the integers live in the IntLinear
      continue;
    }
    if (!ck.contains(item.key())) throw Error("tensor missing from checkpoint").file(dir).key(item.key());
    auto source = ck.tensor(item.key());
    if (source.sizes() != item.value().sizes())
      throw Error("shape does not match the config").file(dir).key(item.key()).expected(c10::str(item.value().sizes()));
    item.value().copy_(source);
  }
  model->to(options.device);
  for (auto& item : model->named_parameters())
    if (item.value().is_floating_point() && item.value().numel() > 0) item.value().set_data(item.value().to(options.dtype));
  model->eval();
  return model;
}

}  // namespace qtrain::quant
