// Slicing the kept rows and columns out of every pruned linear.
#include "prune/compact.h"

#include "common/compat.h"
#include "common/error.h"
#include "common/strings.h"
#include "model/moe.h"

namespace qtrain::prune {

model::ModelConfig compacted_config(const model::ModelConfig& config, const StructuredMasksImpl& masks) {
  QT_REQUIRE(masks.num_layers() == config.num_hidden_layers, "pruning masks and model differ in layer count");
  auto out = config;
  const int64_t groups = config.kv_groups();
  out.intermediate_size = masks.kept_channels();
  out.num_key_value_heads = masks.kept_kv_groups();
  out.num_attention_heads = out.num_key_value_heads * groups;
  out.hidden_size = masks.kept_hidden();
  if (config.is_moe()) {
    out.num_experts = masks.kept_experts();
    if (config.model_type == "mixtral") out.moe_intermediate_size = out.intermediate_size;
  }
  if (masks.layers_pruned()) {
    const auto kept = masks.depth.cpu();
    out.num_hidden_layers = masks.kept_layers();
    // Which kept layers are dense, renumbered; decoder_sparse_step 1 makes the rest sparse.
    if (config.is_moe() && config.model_type != "mixtral") {
      out.mlp_only_layers.clear();
      out.decoder_sparse_step = 1;
      for (int64_t i = 0, t = 0; i < config.num_hidden_layers; ++i)
        if (kept[i].item<bool>()) {
          if (!config.is_moe_layer(i)) out.mlp_only_layers.push_back(t);
          ++t;
        }
    }
    // transformers' per-layer list (attention kinds), where the file has one.
    if (config.raw.contains("layer_types") && config.raw["layer_types"].is_array() &&
        static_cast<int64_t>(config.raw["layer_types"].size()) == config.num_hidden_layers) {
      nlohmann::json types = nlohmann::json::array();
      for (int64_t i = 0; i < config.num_hidden_layers; ++i)
        if (kept[i].item<bool>()) types.push_back(config.raw["layer_types"][i]);
      out.raw["layer_types"] = types;
    }
  }
  return out;  // head_dim is unchanged and always written (ModelConfig::to_json)
}

std::string CompactedModel::source_name(const std::string& name) const {
  const int layer = model::decoder_layer_of(name);
  if (layer < 0) return name;
  const std::string prefix = "model.layers." + std::to_string(layer) + ".";
  std::string rest = name.substr(prefix.size());
  const auto& experts = source_experts.at(layer);
  if (!experts.empty()) {
    // "<moe>.experts.<e>.<rest>"
    const auto at = rest.find(".experts.");
    if (at != std::string::npos) {
      const auto begin = at + 9, end = rest.find('.', begin);
      const auto e = std::stoll(rest.substr(begin, end - begin));
      rest = rest.substr(0, begin) + std::to_string(experts.at(e)) + (end == std::string::npos ? "" : rest.substr(end));
    }
  }
  return "model.layers." + std::to_string(source_layers.at(layer)) + "." + rest;
}

namespace {

std::string module_of(const std::string& parameter) { return parameter.substr(0, parameter.rfind('.')); }

torch::Tensor indices(const torch::Tensor& mask) { return mask.nonzero().reshape({-1}); }

void record_kept_indices(const model::ModelConfig& config, const StructuredMasksImpl& masks, CompactedModel& out) {
  const auto depth = masks.depth.cpu();
  for (int64_t i = 0; i < masks.num_layers(); ++i)
    if (depth[i].item<bool>()) out.source_layers.push_back(i);
  const bool hidden_pruned = masks.hidden_pruned();
  const auto hidden = indices(masks.hidden);
  auto reads = [&](const std::string& module) {
    if (hidden_pruned) out.kept_columns[module] = hidden;
  };
  auto writes = [&](const std::string& module) {
    if (hidden_pruned) out.kept_rows[module] = hidden;
  };
  for (size_t t = 0; t < out.source_layers.size(); ++t) {
    const int64_t i = out.source_layers[t];
    const auto& m = masks.layer(i);
    const std::string layer = "model.layers." + std::to_string(t) + ".";
    const std::string attn = layer + "self_attn.";
    const auto query_rows = kept_query_rows(m.kv_groups, config.kv_groups(), config.head_dim);
    const auto kv_rows = kept_kv_rows(m.kv_groups, config.head_dim);
    out.kept_rows[attn + "q_proj"] = query_rows;
    out.kept_rows[attn + "k_proj"] = kv_rows;
    out.kept_rows[attn + "v_proj"] = kv_rows;
    out.kept_columns[attn + "o_proj"] = query_rows;
    for (const char* p : {"q_proj", "k_proj", "v_proj"}) reads(attn + p);
    writes(attn + "o_proj");
    writes(layer + "input_layernorm");
    writes(layer + "post_attention_layernorm");
    std::vector<int64_t> experts;
    if (!config.is_moe_layer(i)) {
      const std::string mlp = layer + "mlp.";
      const auto channels = indices(m.mlp_channels);
      out.kept_rows[mlp + "gate_proj"] = channels;
      out.kept_rows[mlp + "up_proj"] = channels;
      out.kept_columns[mlp + "down_proj"] = channels;
      reads(mlp + "gate_proj");
      reads(mlp + "up_proj");
      writes(mlp + "down_proj");
    } else {
      const std::string moe = layer + model::SparseMoeImpl::checkpoint_name(config) + ".";
      const auto kept = indices(m.experts).cpu();
      for (int64_t k = 0; k < kept.numel(); ++k) experts.push_back(kept[k].item<int64_t>());
      out.kept_rows[moe + "gate"] = kept;  // the router's rows of the kept experts
      reads(moe + "gate");
      const model::MlpNames names = config.model_type == "mixtral" ? model::MlpNames{"w1", "w3", "w2"} : model::MlpNames{};
      for (size_t e = 0; e < experts.size(); ++e) {
        const auto expert = moe + "experts." + std::to_string(e) + ".";
        reads(expert + names.gate);
        reads(expert + names.up);
        writes(expert + names.down);
      }
    }
    out.source_experts.push_back(experts);
  }
  reads("model.embed_tokens");
  writes("model.norm");
  reads("lm_head");
}

}  // namespace

CompactedModel compact_skeleton(model::CausalLMImpl& model, const StructuredMasksImpl& masks) {
  CompactedModel out;
  const auto& config = model.config();
  record_kept_indices(config, masks, out);
  const auto device = model.model->embed_tokens->weight.device();
  {
    model::Skeleton skeleton(torch::TensorOptions().device(device).dtype(torch::kFloat32));
    out.model = model::CausalLM(compacted_config(config, masks));
  }
  out.model->to(device, torch::kFloat32);  // the buffers; the parameters are there already
  return out;
}

void fill_unit(CompactedModel& compacted, model::CausalLMImpl& source_model, int unit) {
  auto source = source_model.named_parameters();
  torch::NoGradGuard no_grad;
  for (auto& item : compacted.model->named_parameters()) {
    const auto& name = item.key();
    if (model::decoder_layer_of(name) != unit) continue;
    const auto source_name = compacted.source_name(name);
    QT_REQUIRE(source.contains(source_name), "compacted model has a parameter the source lacks: " + source_name);
    auto& target = item.value();
    if (!compat::storage_allocated(target)) compat::allocate_storage(target, target.numel() * target.element_size());
    auto value = source[source_name].detach();
    const auto module = module_of(name);
    const auto device = target.device();
    if (const auto rows = compacted.kept_rows.find(module); rows != compacted.kept_rows.end())
      value = value.index_select(0, rows->second.to(device));
    if (const auto columns = compacted.kept_columns.find(module);
        columns != compacted.kept_columns.end() && ends_with(name, ".weight"))
      value = value.index_select(1, columns->second.to(device));
    target.copy_(value);
  }
}

void release_unit(CompactedModel& compacted, int unit) {
  for (auto& item : compacted.model->named_parameters())
    if (model::decoder_layer_of(item.key()) == unit && item.value().numel() > 0) compat::release_storage(item.value());
}

CompactedModel compact(model::CausalLMImpl& model, const StructuredMasksImpl& masks) {
  auto out = compact_skeleton(model, masks);
  for (int unit = -1; unit < out.model->config().num_hidden_layers; ++unit) fill_unit(out, model, unit);
  return out;
}

}  // namespace qtrain::prune
