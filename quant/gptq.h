// GPTQ (Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative
// Pre-trained Transformers", ICLR 2023; the reference algorithm of IST-DASLab/gptq and
// llm-compressor's GPTQModifier): each weight column is rounded in turn and its rounding
// error is spread over the not-yet-rounded columns through the inverse Hessian of the
// layer's inputs, H = 2/n X^T X, dampened by a fraction of its mean diagonal. Columns are
// processed in blocks (lazy batch updates) and, with act_order, by decreasing Hessian
// diagonal; group scales are then fixed from the original weights ("static groups", as
// llm-compressor's actorder=weight), otherwise taken when a group starts. Block scales
// (FP8 blocks) and w4afp8's engine-re-encoded group scales (whose row maximum must be known
// before the first column) are always static; NVFP4's group scales sit under the global
// scale fixed before the layer (its fused group's, from the weights before GPTQ changed them).
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>
#include <memory>

#include "model/causal_lm.h"
#include "quant/quant_args.h"
#include "quant/quant_math.h"

namespace qtrain::quant {

struct GptqOptions {
  double dampening = 0.01;
  int64_t block_size = 128;
  bool act_order = true;
};

// What run_gptq saw: the calibration tokens that reached each quantized linear (summed over
// ranks; an expert of a mixture sees only those routed to it), and the linears that saw fewer
// than their input columns (a Hessian of lower rank than the weight: an expert seldom routed
// to), which keep round-to-nearest min-max scales instead; rank 0 warns about each.
struct GptqSummary {
  std::map<std::string, int64_t> tokens;
  std::vector<std::string> round_to_nearest;
};

struct GptqResult {
  // Dequantized, in the original column order, [out, in]; for w4afp8 with the quantizing
  // scales (fake quantization with `qparams` then gives the engine's dequantized weight).
  torch::Tensor weight;
  QParams qparams;       // as unit_view(weight) expects them
};

// One linear: weight [out, in], hessian [in, in] (fp32, 2/n X^T X).
// `global_scale`: NVFP4's ([1]), required for it.
GptqResult gptq_quantize(const torch::Tensor& weight, const torch::Tensor& hessian, const QuantArgs& args,
                         const GptqOptions& options, torch::ScalarType scale_dtype,
                         const torch::Tensor& global_scale = {});

// The whole model, decoder layer by decoder layer: Hessians of a layer's quantized linears
// are collected (summed over ranks) from the calibration batches with the earlier layers
// already quantized, then each weight is replaced by its GPTQ result and its scales fixed.
// `hold`: HoldLayer (ptq.h), for a sharded model.
GptqSummary run_gptq(model::CausalLMImpl& model, const GptqOptions& options, const std::function<void()>& run_batches,
                     const std::function<std::shared_ptr<void>(int)>& hold = nullptr);

}  // namespace qtrain::quant
