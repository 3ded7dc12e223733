// compressed-tensors reader: config groups -> per-linear IntLinear, the rest as usual.
#include "quant/load_compressed.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "quant/compressed_tensors.h"
#include "quant/fp4.h"
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
    // bool, or "local": group scales at run time under a calibrated global scale (NVFP4)
    if (j.contains("dynamic") && j["dynamic"].is_string()) {
      if (j["dynamic"].get<std::string>() != "local")
        throw Error("unknown dynamic '" + j["dynamic"].get<std::string>() + "'").key(where + ".dynamic").expected("true, false or \"local\"");
      a.local = true;
    } else {
      a.dynamic = j.value("dynamic", false);
    }
    a.strategy = strategy_from_string(j.at("strategy").get<std::string>());
    if (a.strategy == Strategy::group || a.strategy == Strategy::tensor_group) a.group_size = j.at("group_size").get<int64_t>();
    if (a.strategy == Strategy::block) {
      const auto block = j.at("block_structure").get<std::vector<int64_t>>();
      if (block.size() != 2 || block[0] <= 0 || block[1] <= 0)
        throw Error("block_structure is not [rows, cols]").key(where + ".block_structure").expected("two positive integers");
      a.block_rows = block[0];
      a.block_cols = block[1];
    }
    if (a.is_fp4() && !a.has_global_scale() && !a.has_power_of_two_scales())
      throw Error("FP4 args with strategy " + to_string(a.strategy)).key(where + ".strategy")
          .expected("tensor_group (NVFP4) or group (MXFP4)");
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
  const auto raw = [&](const std::string& tensor) {  // an F8_E4M3 tensor, decoded to fp32
    const auto& file = ck.file_of(tensor);
    return decode_fp8_e4m3(file.raw_bytes(tensor)).reshape(file.entry(tensor).shape);
  };
  if (format == ct::kNvfp4PackQuantized || format == ct::kMxfp4PackQuantized) {
    const bool nvfp4 = format == ct::kNvfp4PackQuantized;
    if (nvfp4 != w.has_global_scale() || (!nvfp4 && !w.has_power_of_two_scales()))
      throw Error("format " + format + " with weights " + w.describe()).file(ck.dir()).key(p + ct::kWeightPacked)
          .expected(nvfp4 ? "fp4 tensor_group weights" : "fp4 group weights");
    t.weight_q = decode_fp4_e2m1(unpack_fp4(ck.tensor(p + ct::kWeightPacked)));
    t.weight_scale = nvfp4 ? raw(p + ct::kWeightScale) : mxfp4_scales(ck.tensor(p + ct::kWeightScale));
    if (nvfp4) t.weight_global_scale = ck.tensor(p + ct::kWeightGlobalScale).to(torch::kFloat32).reshape({1});
    if (in && in->local) t.input_global_scale = ck.tensor(p + ct::kInputGlobalScale).to(torch::kFloat32).reshape({1});
    if (t.weight_scale.size(1) * w.group_size != t.weight_q.size(1))
      throw Error("weight_scale does not hold one scale per group of " + std::to_string(w.group_size)).file(ck.dir())
          .key(p + ct::kWeightScale).expected("[out, in / " + std::to_string(w.group_size) + "]");
    return t;
  }
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
    t.weight_q = raw(p + ct::kWeight);
  } else {
    throw Error("unsupported compressed-tensors format '" + format + "'").file(ck.dir()).key("quantization_config.format")
        .expected("pack-quantized, int-quantized, float-quantized, nvfp4-pack-quantized or mxfp4-pack-quantized");
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
    auto w = args_from_json(group.at("weights"), where + ".weights");
    std::optional<QuantArgs> in;
    if (group.contains("input_activations") && !group["input_activations"].is_null())
      in = args_from_json(group["input_activations"], where + ".input_activations");
    // vLLM's W4A8-FP8 (its _is_fp8_w4a8): int4 group weights, FP8 per-token dynamic inputs.
    w.fp8_group_scales = !w.is_float() && w.num_bits == 4 && w.strategy == Strategy::group && in && in->is_float() &&
                         in->num_bits == 8 && in->strategy == Strategy::token && in->dynamic;
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
