// compressed-tensors reader: config groups -> per-linear IntLinear, the rest as usual. Every
// field of quantization_config is checked for its type and its allowed values, every
// quantized linear's tensors for their dtype, shape and range against the model's [out, in]
// and the group's args, and every tensor of the folder must be used by something: a bad
// export is a qtrain::Error naming the file and the key (exit status 2), never a crash, a
// garbage perplexity or an ignored tensor.
#include "quant/load_compressed.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <vector>

#include "common/error.h"
#include "common/json_file.h"
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

// Typed access to quantization_config's fields, each error naming config.json and the key.
struct Fields {
  std::string path;
  Error error(const std::string& key, const std::string& what) const { return Error(what).file(path).key(key); }
  const json& object(const json& j, const std::string& key) const {
    if (!j.is_object()) throw error(key, "is not a JSON object");
    return j;
  }
  const json* find(const json& j, const char* name) const {
    const auto it = j.find(name);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  }
  std::string string(const json& j, const char* name, const std::string& key, const std::string& fallback) const {
    const json* v = find(j, name);
    if (!v) return fallback;
    if (!v->is_string()) throw error(key + "." + name, "is not a string: " + v->dump());
    return v->get<std::string>();
  }
  bool boolean(const json& j, const char* name, const std::string& key, bool fallback) const {
    const json* v = find(j, name);
    if (!v) return fallback;
    if (!v->is_boolean()) throw error(key + "." + name, "is not true or false: " + v->dump());
    return v->get<bool>();
  }
  int64_t integer(const json& j, const char* name, const std::string& key, int64_t lo, int64_t hi) const {
    const json* v = find(j, name);
    if (!v) throw error(key + "." + name, "is missing");
    if (!v->is_number_integer() || v->get<int64_t>() < lo || v->get<int64_t>() > hi)
      throw error(key + "." + name, "is " + v->dump())
          .expected("an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return v->get<int64_t>();
  }
};

QuantArgs args_from_json(const Fields& f, const json& j, const std::string& where) {
  f.object(j, where);
  QuantArgs a;
  a.type = f.string(j, "type", where, "int");
  if (a.type != "int" && a.type != "float") throw f.error(where + ".type", "is '" + a.type + "'").expected("int or float");
  a.num_bits = static_cast<int>(f.integer(j, "num_bits", where, 1, 8));
  if (a.is_float() && a.num_bits != 8 && a.num_bits != 4)
    throw f.error(where + ".num_bits", "float with " + std::to_string(a.num_bits) + " bits")
        .expected("8 (FP8 E4M3) or 4 (FP4 E2M1)");
  a.symmetric = f.boolean(j, "symmetric", where, true);
  if (a.is_float() && !a.symmetric) throw f.error(where + ".symmetric", "float formats have no zero point").expected("true");
  // bool, or "local": group scales at run time under a calibrated global scale (NVFP4)
  if (const json* d = f.find(j, "dynamic"); d && d->is_string()) {
    if (d->get<std::string>() != "local")
      throw f.error(where + ".dynamic", "is '" + d->get<std::string>() + "'").expected("true, false or \"local\"");
    a.local = true;
  } else {
    a.dynamic = f.boolean(j, "dynamic", where, false);
  }
  const auto strategy = f.string(j, "strategy", where, "");
  try {
    a.strategy = strategy_from_string(strategy);
  } catch (const Error& e) {
    throw f.error(where + ".strategy", e.what()).expected("tensor|channel|group|token|tensor_group|block");
  }
  if (a.strategy == Strategy::group || a.strategy == Strategy::tensor_group)
    a.group_size = f.integer(j, "group_size", where, 1, int64_t{1} << 20);
  if (a.strategy == Strategy::block) {
    const json* block = f.find(j, "block_structure");
    if (!block || !block->is_array() || block->size() != 2 || !(*block)[0].is_number_integer() ||
        !(*block)[1].is_number_integer() || (*block)[0].get<int64_t>() <= 0 || (*block)[1].get<int64_t>() <= 0)
      throw f.error(where + ".block_structure", "is not [rows, cols]").expected("two positive integers");
    a.block_rows = (*block)[0].get<int64_t>();
    a.block_cols = (*block)[1].get<int64_t>();
  }
  if (a.is_fp4() && !a.has_global_scale() && !a.has_power_of_two_scales())
    throw f.error(where + ".strategy", "FP4 args with strategy " + to_string(a.strategy))
        .expected("tensor_group (NVFP4) or group (MXFP4)");
  if (a.local && !a.has_global_scale())
    throw f.error(where + ".dynamic", "\"local\" scales belong to NVFP4 (float, 4 bits, tensor_group)");
  return a;
}

// One config group: its format, args and targets, checked against each other.
struct Group {
  std::string key, format;
  QuantArgs weights;
  std::optional<QuantArgs> inputs;
  std::vector<std::string> targets;
};

Group read_group(const Fields& f, const json& qc, const std::string& name, const json& j) {
  Group g;
  g.key = "quantization_config.config_groups." + name;
  f.object(j, g.key);
  g.format = f.string(j, "format", g.key, f.string(qc, "format", "quantization_config", ""));
  const std::set<std::string> formats = {ct::kPackQuantized, ct::kIntQuantized, ct::kFloatQuantized,
                                         ct::kNvfp4PackQuantized, ct::kMxfp4PackQuantized};
  if (!formats.count(g.format))
    throw f.error(g.key + ".format", "unsupported compressed-tensors format '" + g.format + "'")
        .expected("pack-quantized, int-quantized, float-quantized, nvfp4-pack-quantized or mxfp4-pack-quantized "
                  "(per group when the folder's format is mixed-precision)");
  const json* weights = f.find(j, "weights");
  if (!weights) throw f.error(g.key + ".weights", "is missing").expected("the weights' quantization args");
  g.weights = args_from_json(f, *weights, g.key + ".weights");
  if (const json* in = f.find(j, "input_activations")) g.inputs = args_from_json(f, *in, g.key + ".input_activations");
  const auto& w = g.weights;
  const auto bad = [&](const std::string& what) { return f.error(g.key + ".format", g.format + " with " + what); };
  if (w.strategy == Strategy::token || (w.dynamic && !w.local)) throw bad("weights " + w.describe());
  if (g.format == ct::kPackQuantized && (w.is_float() || (g.inputs && !g.inputs->is_float())))
    throw bad("weights " + w.describe()).expected("int weights, no inputs or FP8 inputs (w4afp8)");
  if (g.format == ct::kIntQuantized && (w.is_float() || !g.inputs || g.inputs->is_float()))
    throw bad("weights " + w.describe()).expected("int weights and int inputs");
  if (g.format == ct::kFloatQuantized && !(w.is_float() && w.num_bits == 8))
    throw bad("weights " + w.describe()).expected("FP8 weights");
  if (g.format == ct::kNvfp4PackQuantized && !w.has_global_scale()) throw bad("weights " + w.describe()).expected("fp4 tensor_group weights");
  if (g.format == ct::kMxfp4PackQuantized && !w.has_power_of_two_scales()) throw bad("weights " + w.describe()).expected("fp4 group weights");
  if (g.inputs && g.inputs->strategy == Strategy::channel) throw bad("inputs " + g.inputs->describe()).expected("tensor, token or group inputs");
  // vLLM's W4A8-FP8 (its _is_fp8_w4a8): int4 group weights, FP8 per-token dynamic inputs.
  g.weights.fp8_group_scales = !w.is_float() && w.num_bits == 4 && w.strategy == Strategy::group && g.inputs &&
                               g.inputs->is_float() && g.inputs->num_bits == 8 && g.inputs->strategy == Strategy::token &&
                               g.inputs->dynamic;
  const json* targets = f.find(j, "targets");
  if (!targets || !targets->is_array() || targets->empty())
    throw f.error(g.key + ".targets", "is not a non-empty array of module names");
  for (size_t i = 0; i < targets->size(); ++i) {
    if (!(*targets)[i].is_string())
      throw f.error(g.key + ".targets[" + std::to_string(i) + "]", "is not a string: " + (*targets)[i].dump())
          .expected("a module name");
    g.targets.push_back((*targets)[i].get<std::string>());
  }
  return g;
}

// The checkpoint's tensors as one linear's reader sees them: each one looked up by name,
// checked for dtype and shape, and recorded as used.
class Tensors {
 public:
  Tensors(const model::HFCheckpoint& ck, std::set<std::string>& used) : ck_(ck), used_(used) {}
  bool contains(const std::string& name) const { return ck_.contains(name); }
  // The stored tensor (a view of the mapping), or with `raw` its bytes as uint8 of that shape
  // (FP8 codes, which 1.13 has no type for and the decoders take as bytes everywhere).
  torch::Tensor get(const std::string& name, const std::set<std::string>& dtypes, const std::vector<int64_t>& shape,
                    bool raw = false) {
    if (!ck_.contains(name)) throw Error("tensor missing from the export").file(ck_.dir()).key(name);
    const auto& file = ck_.file_of(name);
    const auto& e = file.entry(name);
    if (!dtypes.count(e.dtype->name)) {
      std::string allowed;
      for (const auto& d : dtypes) allowed += (allowed.empty() ? "" : " or ") + d;
      throw Error(std::string("dtype ") + e.dtype->name).file(file.path()).key(name).expected(allowed);
    }
    if (e.shape != shape)
      throw Error("shape " + c10::str(torch::IntArrayRef(e.shape))).file(file.path()).key(name)
          .expected(c10::str(torch::IntArrayRef(shape)));
    used_.insert(name);
    return raw || !e.dtype->torch_type ? file.raw_bytes(name).reshape(shape) : file.tensor(name);
  }
  // A float scale (any float dtype), as fp32, every value finite and >= 0 (> 0 when `positive`).
  torch::Tensor scale(const std::string& name, const std::vector<int64_t>& shape, bool positive) {
    return checked(name, get(name, {"F32", "BF16", "F16"}, shape).to(torch::kFloat32), positive);
  }
  torch::Tensor checked(const std::string& name, const torch::Tensor& s, bool positive) const {
    const bool ok = s.numel() == 0 || (torch::isfinite(s).all().item<bool>() &&
                                       (positive ? s.gt(0) : s.ge(0)).all().item<bool>());
    if (!ok)
      throw Error(std::string("scale holds a value that is not finite and ") + (positive ? "positive" : "non-negative"))
          .file(ck_.file_of(name).path()).key(name);
    return s;
  }
  // Integer codes must lie on the b-bit grid.
  void in_range(const std::string& name, const torch::Tensor& q, const QuantArgs& a) const {
    if (q.numel() > 0 && (q.min().item<int64_t>() < a.qmin() || q.max().item<int64_t>() > a.qmax()))
      throw Error("values outside the " + std::to_string(a.num_bits) + "-bit range").file(ck_.file_of(name).path()).key(name)
          .expected("[" + std::to_string(a.qmin()) + ", " + std::to_string(a.qmax()) + "]");
  }
  const std::string& dir() const { return ck_.dir(); }

 private:
  const model::HFCheckpoint& ck_;
  std::set<std::string>& used_;
};

// The scale matrix's shape for weights of [out, in] under `a`.
std::vector<int64_t> scale_shape(const QuantArgs& a, int64_t out, int64_t in) {
  switch (a.strategy) {
    case Strategy::group:
    case Strategy::tensor_group: return {out, in / a.group_size};
    case Strategy::block: return {(out + a.block_rows - 1) / a.block_rows, (in + a.block_cols - 1) / a.block_cols};
    case Strategy::tensor: return {1};
    default: return {out, 1};
  }
}

IntLinearTensors read_linear(Tensors& ts, const std::string& name, const Group& g, int64_t out, int64_t in) {
  const auto& w = g.weights;
  IntLinearTensors t;
  t.format = g.format;
  t.weights = w;
  t.input_activations = g.inputs;
  const std::string p = name + ".";
  if ((w.strategy == Strategy::group || w.strategy == Strategy::tensor_group) && in % w.group_size != 0)
    throw Error("group_size " + std::to_string(w.group_size) + " does not divide the " + std::to_string(in) +
                " input features of " + name).file(ts.dir() + "/config.json").key(g.key + ".weights.group_size");
  const auto sshape = scale_shape(w, out, in);
  if (g.format == ct::kNvfp4PackQuantized || g.format == ct::kMxfp4PackQuantized) {
    const bool nvfp4 = g.format == ct::kNvfp4PackQuantized;
    if (in % 2) throw Error("FP4 packs two values per byte; odd input features").file(ts.dir()).key(p + ct::kWeightPacked);
    t.weight_q = decode_fp4_e2m1(unpack_fp4(ts.get(p + ct::kWeightPacked, {"U8"}, {out, in / 2})));
    if (nvfp4) {
      t.weight_scale = ts.checked(p + ct::kWeightScale,
                                  decode_fp8_e4m3(ts.get(p + ct::kWeightScale, {"F8_E4M3"}, sshape, true)).reshape(sshape), false);
      t.weight_global_scale = ts.scale(p + ct::kWeightGlobalScale, {1}, true);
    } else {
      t.weight_scale = mxfp4_scales(ts.get(p + ct::kWeightScale, {"U8"}, sshape));
    }
    if (g.inputs && g.inputs->local) t.input_global_scale = ts.scale(p + ct::kInputGlobalScale, {1}, true);
    if (g.inputs && !g.inputs->dynamic && !g.inputs->local)
      throw Error("FP4 layers take dynamic inputs").file(ts.dir() + "/config.json").key(g.key + ".input_activations.dynamic");
    return t;
  }
  const bool has_zero_point = ts.contains(p + ct::kWeightZeroPoint);
  if (has_zero_point == w.symmetric)
    throw Error(w.symmetric ? "symmetric weights with a zero point" : "asymmetric weights without their zero points")
        .file(ts.dir()).key(p + ct::kWeightZeroPoint);
  if (g.format == ct::kPackQuantized) {
    const auto shape = ts.get(p + ct::kWeightShape, {"I64", "I32"}, {2}).to(torch::kInt64);
    if (shape[0].item<int64_t>() != out || shape[1].item<int64_t>() != in)
      throw Error("weight_shape " + c10::str(shape.sizes()) + " = [" + std::to_string(shape[0].item<int64_t>()) + ", " +
                  std::to_string(shape[1].item<int64_t>()) + "]").file(ts.dir()).key(p + ct::kWeightShape)
          .expected("[" + std::to_string(out) + ", " + std::to_string(in) + "] (the model's linear)");
    t.weight_q = unpack_from_int32(ts.get(p + ct::kWeightPacked, {"I32"}, {out, packed_words(in, w.num_bits)}), w.num_bits, in);
    if (has_zero_point) {
      const std::vector<int64_t> zshape = {packed_words(sshape[0], w.num_bits), sshape[1]};
      t.weight_zero_point = unpack_from_int32(ts.get(p + ct::kWeightZeroPoint, {"I32"}, zshape), w.num_bits, sshape[0], 0);
    }
  } else if (g.format == ct::kIntQuantized) {
    t.weight_q = ts.get(p + ct::kWeight, {"I8"}, {out, in}).clone();
    ts.in_range(p + ct::kWeight, t.weight_q, w);
    if (has_zero_point) {
      t.weight_zero_point = ts.get(p + ct::kWeightZeroPoint, {"I8", "I32"}, sshape).to(torch::kInt8);
      ts.in_range(p + ct::kWeightZeroPoint, t.weight_zero_point, w);
    }
  } else {  // float-quantized: FP8 E4M3 codes
    t.weight_q = decode_fp8_e4m3(ts.get(p + ct::kWeight, {"F8_E4M3"}, {out, in}, true)).reshape({out, in});
    if (!torch::isfinite(t.weight_q).all().item<bool>())
      throw Error("FP8 weights hold NaN codes").file(ts.dir()).key(p + ct::kWeight);
  }
  t.weight_scale = ts.scale(p + ct::kWeightScale, sshape, false);
  if (t.weight_scale.dim() == 1) t.weight_scale = t.weight_scale.reshape({-1, 1});
  if (g.inputs && !g.inputs->dynamic) {
    t.input_scale = ts.scale(p + ct::kInputScale, {1}, true);
    const bool has_input_zero_point = ts.contains(p + ct::kInputZeroPoint);
    if (has_input_zero_point == g.inputs->symmetric)
      throw Error(g.inputs->symmetric ? "symmetric inputs with a zero point" : "asymmetric inputs without their zero point")
          .file(ts.dir()).key(p + ct::kInputZeroPoint);
    if (has_input_zero_point) t.input_zero_point = ts.get(p + ct::kInputZeroPoint, {"I8", "I32"}, {1}).to(torch::kInt8);
  }
  return t;
}

}  // namespace

bool is_compressed_tensors(const std::string& dir) {
  const auto config = read_config(dir);
  return config.contains("quantization_config") && config["quantization_config"].is_object() &&
         config["quantization_config"].value("quant_method", json()) == ct::kQuantMethod;
}

model::CausalLM load_for_eval(const std::string& dir, const model::LoadOptions& options) {
  if (!is_compressed_tensors(dir)) return model::load_causal_lm(dir, options);
  const auto ck = model::HFCheckpoint::open(dir);
  const Fields f{(fs::path(dir) / "config.json").string()};
  {
    std::ifstream in(f.path);
    std::stringstream text;
    text << in.rdbuf();
    (void)json::parse(text.str(), duplicate_key_guard(f.path));  // the key occurs twice: an Error
  }
  const auto qc = read_config(dir)["quantization_config"];
  model::CausalLM model(ck.config());
  const json* groups = f.find(qc, "config_groups");
  if (!groups || !groups->is_object() || groups->empty())
    throw f.error("quantization_config.config_groups", "is not a non-empty object of groups");
  if (const json* ignore = f.find(qc, "ignore"); ignore && !ignore->is_array())
    throw f.error("quantization_config.ignore", "is not an array of module names");
  std::set<std::string> used;
  Tensors tensors(ck, used);
  std::map<std::string, std::string> claimed_by;  // linear -> its group
  auto modules = model->named_modules("", false);
  for (const auto& [group_name, group_json] : groups->items()) {
    const auto g = read_group(f, qc, group_name, group_json);
    for (const auto& name : g.targets) {
      if (!modules.contains(name) || !modules[name]->as<model::LinearImpl>())
        throw f.error(g.key + ".targets", "target '" + name + "' is not a linear layer of this model");
      if (!claimed_by.emplace(name, group_name).second)
        throw f.error(g.key + ".targets", "'" + name + "' is claimed by config group '" + claimed_by[name] + "' already")
            .expected("each linear in one group");
      auto* linear = modules[name]->as<model::LinearImpl>();
      const auto out = linear->weight.size(0), in = linear->weight.size(1);
      linear->set_wrapper("int", std::make_shared<IntLinear>(read_linear(tensors, name, g, out, in)));
    }
  }
  torch::NoGradGuard no_grad;
  if (const json* kv = f.find(qc, "kv_cache_scheme")) {
    const auto args = args_from_json(f, *kv, "quantization_config.kv_cache_scheme");
    if (!args.is_float() || args.num_bits != 8 || args.strategy != Strategy::tensor || args.dynamic)
      throw f.error("quantization_config.kv_cache_scheme", "only static per-tensor FP8 KV-cache scales are read")
          .expected("type float, num_bits 8, strategy tensor, dynamic false");
    attach_kv_cache_quant(*model, config::KvCache::fp8);
    int64_t layer = 0;
    for (auto* kv_quant : kv_cache_quantizers(*model)) {
      const auto prefix = "model.layers." + std::to_string(layer++) + ".self_attn.";
      kv_quant->keys().set({tensors.scale(prefix + ct::kKeyScale, {1}, true), {}});
      kv_quant->values().set({tensors.scale(prefix + ct::kValueScale, {1}, true), {}});
    }
  }
  for (auto& item : model->named_parameters()) {
    const auto& name = item.key();
    const auto module = name.substr(0, name.rfind('.'));
    if (claimed_by.count(module) && name == module + ".weight") {
      item.value().set_data(torch::empty({0}));  // the integers live in the IntLinear
      continue;
    }
    if (!ck.contains(name)) throw Error("tensor missing from checkpoint").file(dir).key(name);
    auto source = ck.tensor(name);
    if (source.sizes() != item.value().sizes())
      throw Error("shape does not match the config").file(dir).key(name).expected(c10::str(item.value().sizes()));
    if (!source.is_floating_point())
      throw Error(std::string("integer tensor where floating weights are expected: ") + c10::toString(source.scalar_type()))
          .file(ck.file_of(name).path()).key(name);
    item.value().copy_(source);
    used.insert(name);
  }
  for (const auto& name : ck.tensor_names()) {
    if (used.count(name) || model::is_derived_buffer(name)) continue;
    if (name == "lm_head.weight" && model->config().tie_word_embeddings) continue;  // ignored when tied, as in HF
    throw Error("unexpected tensor: no module of the model or quantization_config uses it")
        .file(ck.file_of(name).path()).key(name);
  }
  model->to(options.device);
  for (auto& item : model->named_parameters())
    if (item.value().is_floating_point() && item.value().numel() > 0) item.value().set_data(item.value().to(options.dtype));
  model->eval();
  return model;
}

}  // namespace qtrain::quant
