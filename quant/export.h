// Writes a model with fake quantization attached as the static-quantized checkpoint that
// inference engines load: safetensors in the compressed-tensors layout plus config.json
// with its quantization_config (docs/formats.md). The integers and scales are computed with
// quant_math.h from the same weights and parameters the fake-quant forward uses, so the
// exported model computes what the trained one simulated.
#pragma once
#include <nlohmann/json.hpp>
#include <functional>
#include <string>
#include <vector>

#include "model/causal_lm.h"
#include "quant/quant_error.h"

namespace qtrain::quant {

struct ExportOptions {
  torch::ScalarType dtype = torch::kBFloat16;  // unquantized tensors (scales: their layer's scale_dtype)
  std::string tokenizer_source;                // folder whose tokenizer files are copied ("" = none)
  int64_t max_shard_bytes = int64_t{5} << 30;  // weight files above this split into shards
  // Sharded weights (ZeRO-3): makes one unit whole while the export reads it, and frees it
  // after: called with (unit, true) before and (unit, false) after, for unit -1 (everything
  // outside the decoder layers) and then each decoder layer in turn. Every rank runs the
  // export then (the gathers are collective) and only the one with `write` writes. Empty:
  // the weights are whole already.
  model::GatherUnit gather;
  bool write = true;
};

struct ExportSummary {
  int64_t quantized_linears = 0;
  int64_t quantized_weights = 0;   // elements
  int64_t quantized_bytes = 0;     // bytes of those linears' tensors (weights, scales, ...)
  int64_t total_bytes = 0;         // all tensors
  std::vector<LayerQuantError> errors;  // per quantized linear, by name (quant_error.h)
  double bits_per_quantized_weight() const {
    return quantized_weights ? 8.0 * static_cast<double>(quantized_bytes) / static_cast<double>(quantized_weights) : 0.0;
  }
};

// Streams unit by unit (ExportOptions::gather) into Hugging Face weight shards
// (model::WeightShardWriter): at most one decoder layer's weights and one shard's tensors are
// held at a time beyond the model itself.
ExportSummary export_compressed_tensors(model::CausalLMImpl& model, const std::string& out_dir,
                                        const ExportOptions& options = {});

// Copies the tokenizer files of folder `source` ("" = none) into `out_dir`.
void copy_tokenizer_files(const std::string& source, const std::string& out_dir);

// The quantization_config block for the model's fake-quantized layers.
nlohmann::json quantization_config(model::CausalLMImpl& model);

}  // namespace qtrain::quant
