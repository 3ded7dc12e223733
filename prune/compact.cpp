// Slicing the kept rows and columns out of every pruned linear.
#include "prune/compact.h"

#include "common/compat.h"
#include "common/error.h"
#include "common/strings.h"

namespace qtrain::prune {

model::ModelConfig compacted_config(const model::ModelConfig& config, const StructuredMasksImpl& masks) {
  QT_REQUIRE(masks.num_layers() == config.num_hidden_layers, "pruning masks and model differ in layer count");
  auto out = config;
  const int64_t groups = config.kv_groups();
  out.intermediate_size = masks.kept_channels();
  out.num_key_value_heads = masks.kept_kv_groups();
  out.num_attention_heads = out.num_key_value_heads * groups;
  return out;  // head_dim is unchanged and always written (ModelConfig::to_json)
}

namespace {


std::string module_of(const std::string& parameter) { return parameter.substr(0, parameter.rfind('.')); }

void record_kept_indices(const model::ModelConfig& config, const StructuredMasksImpl& masks, CompactedModel& out) {
  for (int64_t i = 0; i < masks.num_layers(); ++i) {
    const auto& m = masks.layer(i);
    const std::string attn = "model.layers." + std::to_string(i) + ".self_attn.";
    const std::string mlp = "model.layers." + std::to_string(i) + ".mlp.";
    const auto query_rows = kept_query_rows(m.kv_groups, config.kv_groups(), config.head_dim);
    const auto kv_rows = kept_kv_rows(m.kv_groups, config.head_dim);
    const auto channels = m.mlp_channels.nonzero().reshape({-1});
    out.kept_rows[attn + "q_proj"] = query_rows;
    out.kept_rows[attn + "k_proj"] = kv_rows;
    out.kept_rows[attn + "v_proj"] = kv_rows;
    out.kept_columns[attn + "o_proj"] = query_rows;
    out.kept_rows[mlp + "gate_proj"] = channels;
    out.kept_rows[mlp + "up_proj"] = channels;
    out.kept_columns[mlp + "down_proj"] = channels;
  }
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
    QT_REQUIRE(source.contains(name), "compacted model has a parameter the source lacks: " + name);
    auto& target = item.value();
    if (!compat::storage_allocated(target)) compat::allocate_storage(target, target.numel() * target.element_size());
    auto value = source[name].detach();
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
  for (int unit = -1; unit < model.config().num_hidden_layers; ++unit) fill_unit(out, model, unit);
  return out;
}

}  // namespace qtrain::prune
