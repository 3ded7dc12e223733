// compressed-tensors export: per quantized linear, the integers and scales from the shared
// arithmetic; everything else in the export dtype; config.json with quantization_config.
#include "quant/export.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include "common/atomic_file.h"
#include "common/error.h"
#include "model/hf_checkpoint.h"
#include "quant/compressed_tensors.h"
#include "quant/fp4.h"
#include "quant/fp8.h"
#include "quant/kv_cache_quant.h"
#include "quant/model_state.h"
#include "quant/pack_quantized.h"
#include "quant/quant_math.h"
#include "quant/quantized_model.h"

namespace qtrain::quant {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json args_json(const QuantArgs& a) {
  const bool grouped = a.strategy == Strategy::group || a.strategy == Strategy::tensor_group;
  json j = {{"num_bits", a.num_bits},
            {"type", a.type},
            {"symmetric", a.symmetric},
            {"strategy", to_string(a.strategy)},
            {"dynamic", a.local ? json("local") : json(a.dynamic)},
            {"group_size", grouped ? json(a.group_size) : json(nullptr)},
            {"block_structure", a.strategy == Strategy::block ? json({a.block_rows, a.block_cols}) : json(nullptr)},
            {"actorder", nullptr},
            {"observer", a.dynamic ? json(nullptr) : json(a.local ? "static_minmax" : "minmax")},
            {"observer_kwargs", json::object()},
            {"zp_dtype", nullptr}};
  // The scale formats compressed-tensors names (its NVFP4 and MXFP4 presets); null: the
  // scale is stored in the checkpoint's dtype.
  j["scale_dtype"] = a.has_global_scale() ? json("torch.float8_e4m3fn")
                     : a.has_power_of_two_scales() ? json("torch.uint8")
                                                   : json(nullptr);
  return j;
}

const char* format_of(const Scheme& s) {
  if (s.weights && s.weights->has_global_scale()) return ct::kNvfp4PackQuantized;
  if (s.weights && s.weights->has_power_of_two_scales()) return ct::kMxfp4PackQuantized;
  if (s.weights && s.weights->is_float()) return ct::kFloatQuantized;
  // Int weights under FP8 activations (w4afp8) stay packed: vLLM's W4A8-FP8 reads weight_packed.
  if (s.input_activations && !s.input_activations->is_float()) return ct::kIntQuantized;
  return ct::kPackQuantized;
}

// MXFP4's stored E8M0 exponents of power-of-two scales 2^(e - 127) (fp32, exact).
torch::Tensor e8m0_exponents(const torch::Tensor& scale) {
  return (torch::log2(scale.to(torch::kFloat64)) + 127).round().clamp(0, 255).to(torch::kUInt8);
}

// The compressed tensors of one linear, "X.<suffix>" -> tensor, plus raw-dtype tags.
void compress_linear(const std::string& prefix, const torch::Tensor& weight, const torch::Tensor& bias,
                     FakeQuantLinear& layer, torch::ScalarType dtype, model::NamedTensors& out,
                     std::map<std::string, std::string>& raw_dtypes) {
  torch::NoGradGuard no_grad;
  const auto& scheme = layer.scheme();
  const auto& args = *scheme.weights;
  const auto w = weight.detach().to(torch::kFloat32);
  const auto out_features = w.size(0), in_features = w.size(1);
  const auto qp = layer.weights().qparams(w);
  const auto q = from_unit_view(quantize(unit_view(w, args), {qp.scale.detach(), qp.zero_point, qp.global_scale}, args),
                                w.sizes(), args);
  // Block scales as the [row blocks, column blocks] matrix; the others one row per output.
  const auto scale_rows = args.strategy == Strategy::block ? (out_features + args.block_rows - 1) / args.block_rows : out_features;
  const auto scale = qp.scale.detach().reshape({scale_rows, -1});
  const auto zero_point = qp.zero_point.reshape({scale_rows, -1});
  const std::string format = format_of(scheme);
  if (format == ct::kNvfp4PackQuantized || format == ct::kMxfp4PackQuantized) {
    out.emplace_back(prefix + ct::kWeightPacked, pack_fp4(encode_fp4_e2m1(q)));
    const auto scale_name = prefix + ct::kWeightScale;
    if (format == ct::kMxfp4PackQuantized) {
      out.emplace_back(scale_name, e8m0_exponents(scale));
    } else {
      out.emplace_back(scale_name, encode_fp8_e4m3(scale));
      raw_dtypes[scale_name] = "F8_E4M3";
      out.emplace_back(prefix + ct::kWeightGlobalScale, qp.global_scale.detach().reshape({1}).to(torch::kFloat32));
    }
    if (scheme.input_activations && scheme.input_activations->local)
      out.emplace_back(prefix + ct::kInputGlobalScale, layer.inputs().global_scale.detach().reshape({1}).to(torch::kFloat32));
    if (bias.defined()) out.emplace_back(prefix + "bias", bias.detach().to(dtype));
    return;
  }
  if (format == ct::kPackQuantized) {
    out.emplace_back(prefix + ct::kWeightPacked, pack_to_int32(q, args.num_bits));
    out.emplace_back(prefix + ct::kWeightShape, torch::tensor({out_features, in_features}, torch::kInt64));
    if (!args.symmetric) out.emplace_back(prefix + ct::kWeightZeroPoint, pack_to_int32(zero_point, args.num_bits, 0));
  } else if (format == ct::kIntQuantized) {
    out.emplace_back(prefix + ct::kWeight, q.to(torch::kInt8));
    if (!args.symmetric) out.emplace_back(prefix + ct::kWeightZeroPoint, zero_point.to(torch::kInt8));
  } else {
    const auto name = prefix + ct::kWeight;
    out.emplace_back(name, encode_fp8_e4m3(q));
    raw_dtypes[name] = "F8_E4M3";
  }
  // Scales as the simulation rounded them (quant.scale_dtype), whatever the export dtype.
  out.emplace_back(prefix + ct::kWeightScale, scale.to(layer.scale_dtype()));
  if (scheme.input_activations && !scheme.input_activations->dynamic) {
    const auto in = layer.inputs().stored();
    out.emplace_back(prefix + ct::kInputScale, in.scale.detach().reshape({1}).to(layer.scale_dtype()));
    if (!scheme.input_activations->symmetric)
      out.emplace_back(prefix + ct::kInputZeroPoint, in.zero_point.reshape({1}).to(torch::kInt8));
  }
  if (bias.defined()) out.emplace_back(prefix + "bias", bias.detach().to(dtype));
}

// FP8 KV cache: per-tensor static scales, the scheme vLLM reads; nothing for int8 or none.
json kv_cache_scheme(model::CausalLMImpl& model) {
  const auto kv = kv_cache_quantizers(model);
  if (kv.empty() || kv.front()->kind() != config::KvCache::fp8) return nullptr;
  QuantArgs a;
  a.type = "float";
  return args_json(a);
}

}  // namespace

void copy_tokenizer_files(const std::string& source, const std::string& out_dir) {
  if (source.empty()) return;
  for (const auto* name : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                           "vocab.json", "merges.txt", "generation_config.json"}) {
    const auto from = fs::path(source) / name;
    if (fs::exists(from)) fs::copy_file(from, fs::path(out_dir) / name, fs::copy_options::overwrite_existing);
  }
}

json quantization_config(model::CausalLMImpl& model) {
  auto layers = fake_quant_layers(model);
  std::map<std::string, std::vector<std::string>> targets;  // scheme -> module names
  std::map<std::string, const Scheme*> schemes;
  for (auto& [name, layer] : layers) {
    if (!layer->scheme().weights) continue;  // activation-only schemes are not exported
    targets[layer->scheme().name].push_back(name);
    schemes[layer->scheme().name] = &layer->scheme();
  }
  json groups = json::object();
  std::set<std::string> formats;
  int index = 0;
  for (const auto& [scheme_name, names] : targets) {
    const auto& s = *schemes[scheme_name];
    json group = {{"targets", names},
                  {"weights", args_json(*s.weights)},
                  {"input_activations", s.input_activations ? args_json(*s.input_activations) : json(nullptr)},
                  {"output_activations", nullptr},
                  {"format", format_of(s)}};
    formats.insert(format_of(s));
    groups["group_" + std::to_string(index++)] = group;
  }
  json ignore = json::array();
  for (const auto& item : model.named_modules("", false))
    if (item.value()->as<model::LinearImpl>() && !layers.count(item.key())) ignore.push_back(item.key());
  if (model.config().tie_word_embeddings) ignore.push_back("lm_head");  // tied: no Linear, but engines have one
  return {{"quant_method", ct::kQuantMethod},
          {"format", formats.size() == 1 ? *formats.begin() : std::string(ct::kMixedPrecision)},
          {"config_groups", groups},
          {"ignore", ignore},
          {"kv_cache_scheme", kv_cache_scheme(model)},
          {"quantization_status", "compressed"},
          {"global_compression_ratio", nullptr},
          {"sparsity_config", json::object()},
          {"transform_config", json::object()},
          {"version", ct::kVersion}};
}

ExportSummary export_compressed_tensors(model::CausalLMImpl& model, const std::string& out_dir,
                                        const ExportOptions& options) {
  const auto kv = kv_cache_quantizers(model);
  auto modules = model.named_modules("", false);
  const auto state = model::hf_state(model);  // handles only: read while their unit is whole
  ExportSummary summary;
  std::optional<model::WeightShardWriter> writer;
  if (options.write) writer.emplace(out_dir, options.max_shard_bytes);
  for (int unit = -1; unit < model.config().num_hidden_layers; ++unit) {
    const model::HeldUnit held(options.gather, unit);
    // Listed once the unit is whole: a gather may attach a unit's quantizers (export_pruned).
    auto layers = fake_quant_layers(model);
    if (writer) {
      model::NamedTensors tensors;
      std::map<std::string, std::string> raw_dtypes;
      std::set<std::string> done;
      for (auto& [name, layer] : layers) {
        if (model::decoder_layer_of(name) != unit || !layer->scheme().weights) continue;
        auto* linear = modules[name]->as<model::LinearImpl>();
        const auto before = tensors.size();
        compress_linear(name + ".", linear->weight, linear->bias, *layer, options.dtype, tensors, raw_dtypes);
        for (size_t i = before; i < tensors.size(); ++i) summary.quantized_bytes += model::stored_bytes(tensors[i].second);
        summary.quantized_weights += linear->weight.numel();
        ++summary.quantized_linears;
        summary.errors.push_back(weight_quant_error(name, *layer, linear->weight));
        done.insert(name + ".weight");
        done.insert(name + ".bias");
      }
      if (unit >= 0 && static_cast<size_t>(unit) < kv.size() && kv[unit]->kind() == config::KvCache::fp8) {
        const auto prefix = "model.layers." + std::to_string(unit) + ".self_attn.";
        tensors.emplace_back(prefix + ct::kKeyScale, kv[unit]->keys().scale.detach().reshape({1}).to(torch::kFloat32));
        tensors.emplace_back(prefix + ct::kValueScale, kv[unit]->values().scale.detach().reshape({1}).to(torch::kFloat32));
      }
      for (const auto& [name, tensor] : state) {
        if (model::decoder_layer_of(name) != unit || done.count(name) || is_quantizer_state(name)) continue;
        tensors.emplace_back(name, tensor.is_floating_point() ? tensor.detach().to(options.dtype) : tensor.detach());
      }
      for (auto& [name, tensor] : tensors) {
        summary.total_bytes += model::stored_bytes(tensor);
        const auto raw = raw_dtypes.find(name);
        writer->add(name, tensor, raw == raw_dtypes.end() ? "" : raw->second);  // copied: the unit may go
      }
    }
  }
  if (!writer) return summary;
  std::sort(summary.errors.begin(), summary.errors.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  writer->finish();
  auto config = model.config().to_json();
  config["dtype"] = model::dtype_name(options.dtype);
  if (config.contains("torch_dtype")) config["torch_dtype"] = model::dtype_name(options.dtype);
  config["quantization_config"] = quantization_config(model);
  write_file_atomic((fs::path(out_dir) / "config.json").string(), config.dump(2) + "\n");
  copy_tokenizer_files(options.tokenizer_source, out_dir);
  return summary;
}

}  // namespace qtrain::quant
