// The size of a Hugging Face or compressed-tensors folder as written: bytes of its
// safetensors files and bits per weight, for the run report's results table
// (docs/report.md). Read from the files, so it holds for any exporter.
#pragma once
#include <cstdint>
#include <string>

namespace qtrain::quant {

struct FolderSize {
  int64_t file_bytes = 0;          // the model*.safetensors files (one or shards), headers included
  int64_t tensor_bytes = 0;        // their tensor data
  int64_t elements = 0;            // tensor elements (packed int32 words count as one each)
  int64_t quantized_linears = 0;   // targets of quantization_config in config.json
  int64_t quantized_weights = 0;   // their weight elements (weight_shape for packed ones)
  int64_t quantized_bytes = 0;     // their tensors' bytes (weights, scales, zero points, ...)
  // Over the quantized linears when there are any (as quant::ExportSummary), else over all
  // tensors (32 for fp32, 16 for bf16).
  double bits_per_weight() const;
};

FolderSize folder_size(const std::string& dir);

}  // namespace qtrain::quant
