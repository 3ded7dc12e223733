// Physical removal of the pruned structure: a new, smaller model whose matrices hold only
// the kept rows and columns, without the dropped decoder layers and experts (the kept ones
// renumbered in order), with a config that says so (intermediate_size, num_attention_heads,
// num_key_value_heads, num_hidden_layers, hidden_size, the experts' count, Qwen3-MoE's
// mlp_only_layers and a layer_types list; head_dim stays explicit and unchanged). Sizes are
// uniform over layers, as a Hugging Face config.json can only express one intermediate_size,
// one num_key_value_heads and one experts' count. Because a masked unit contributes exactly
// zero, the compacted model computes what the masked one did, up to summation order
// (tests/prune/test_compact.cpp: perplexity equal to 1e-5 relative in fp32).
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>

#include "model/causal_lm.h"
#include "prune/masks.h"

namespace qtrain::prune {

struct CompactedModel {
  model::CausalLM model{nullptr};  // fp32 weights (copies), on the source's device, no wrappers
  // Per module name of the compacted model ("model.layers.0.mlp.down_proj"): the source's
  // kept output rows (a norm's or a bias's entries) and kept input columns (an embedding's)
  // as int64 indices; a module absent from a map keeps all of them.
  std::map<std::string, torch::Tensor> kept_rows, kept_columns;
  // The source's decoder layer of each compacted layer, and the source's expert of each
  // compacted expert (per compacted layer; empty in dense layers).
  std::vector<int64_t> source_layers;
  std::vector<std::vector<int64_t>> source_experts;
  // The source's name of a compacted parameter, buffer or module, and the source's unit
  // (model::GatherUnit) of a compacted unit.
  std::string source_name(const std::string& name) const;
  int source_unit(int unit) const { return unit < 0 ? unit : static_cast<int>(source_layers.at(unit)); }
};

CompactedModel compact(model::CausalLMImpl& model, const StructuredMasksImpl& masks);

// The same, streamed for a model too large to hold twice, or sharded (ZeRO-3): the compacted
// model is built as a model::Skeleton (no memory), and fill_unit gives one unit's parameters
// (model::GatherUnit; the source's unit whole) memory and their kept values, release_unit
// takes that memory back. compact() is compact_skeleton then fill_unit of every unit.
CompactedModel compact_skeleton(model::CausalLMImpl& model, const StructuredMasksImpl& masks);
void fill_unit(CompactedModel& compacted, model::CausalLMImpl& source, int unit);
void release_unit(CompactedModel& compacted, int unit);

// The config of the compacted model: `config` with the kept sizes.
model::ModelConfig compacted_config(const model::ModelConfig& config, const StructuredMasksImpl& masks);

}  // namespace qtrain::prune
