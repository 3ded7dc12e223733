// Loads a checkpoint folder for evaluation, whether plain (model/hf_checkpoint.h) or
// exported in the compressed-tensors layout (config.json with quantization_config), in
// which case every quantized linear runs through IntLinear with the stored integers.
#pragma once
#include <string>

#include "model/causal_lm.h"
#include "model/hf_checkpoint.h"

namespace qtrain::quant {

bool is_compressed_tensors(const std::string& dir);

// Any Llama-family folder qtrain reads or writes; `options.dtype` is the compute dtype of
// the unquantized parts.
model::CausalLM load_for_eval(const std::string& dir, const model::LoadOptions& options = {});

}  // namespace qtrain::quant
