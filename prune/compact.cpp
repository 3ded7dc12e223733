// Slicing the kept rows and columns out of every pruned linear.
#include "prune/compact.h"

#include "common/error.h"

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

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

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

CompactedModel compact(model::CausalLMImpl& model, const StructuredMasksImpl& masks) {
  CompactedModel out;
  const auto& config = model.config();
  record_kept_indices(config, masks, out);
  out.model = model::CausalLM(compacted_config(config, masks));
  const auto device = model.model->embed_tokens->weight.device();
  out.model->to(device, torch::kFloat32);
  auto source = model.named_parameters();
  torch::NoGradGuard no_grad;
  for (auto& item : out.model->named_parameters()) {
    const auto& name = item.key();
    QT_REQUIRE(source.contains(name), "compacted model has a parameter the source lacks: " + name);
    auto value = source[name].detach();
    const auto module = module_of(name);
    if (const auto rows = out.kept_rows.find(module); rows != out.kept_rows.end())
      value = value.index_select(0, rows->second.to(device));
    if (const auto columns = out.kept_columns.find(module); columns != out.kept_columns.end() && ends_with(name, ".weight"))
      value = value.index_select(1, columns->second.to(device));
    item.value().copy_(value);
  }
  return out;
}

}  // namespace qtrain::prune
