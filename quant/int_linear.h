// The integer evaluator's linear layer: it runs an exported compressed-tensors linear with
// the stored integers. int-quantized (W8A8): the input is quantized with the stored static
// (or per-token dynamic) scale, the product is an exact int8 x int8 -> int32 GEMM, and the
// accumulator is rescaled by input_scale x weight_scale. pack-quantized (weight-only): the
// int4/int8 groups are unpacked and dequantized, then multiplied in the activation dtype.
// float-quantized (FP8): inputs and weights on the E4M3 grid, product in fp32.
// Group-wise activations (NVFP4, MXFP4, FP8 blocks' groups of 128, w4afp8's FP8 tokens):
// the input is quantized and dequantized with its run-time group scales (NVFP4's under the
// stored input_global_scale), the weight decoded from its codes and scales (NVFP4: E4M3 group
// scale / global scale; MXFP4: 2^(e - 127); w4afp8: the scales vLLM's kernel re-encodes,
// fp8.h), and the two multiplied in fp32.
#pragma once
#include <torch/torch.h>

#include <string>

#include "model/layers.h"
#include "quant/quant_args.h"

namespace qtrain::quant {

struct IntLinearTensors {
  std::string format;                // compressed-tensors format of the layer
  QuantArgs weights;
  std::optional<QuantArgs> input_activations;
  torch::Tensor weight_q;            // [out, in]: integer codes (int8) or FP8/FP4 grid values (fp32)
  torch::Tensor weight_scale;        // [out, groups], or [row blocks, column blocks]; fp32 (NVFP4: E4M3 values)
  torch::Tensor weight_zero_point;   // [out, groups] or undefined
  torch::Tensor weight_global_scale;  // NVFP4: [1], else undefined
  torch::Tensor input_scale, input_zero_point;  // [1] or undefined
  torch::Tensor input_global_scale;  // NVFP4 W4A4: [1], else undefined
};

class IntLinear : public model::LinearWrapper {
 public:
  explicit IntLinear(IntLinearTensors tensors);
  torch::Tensor forward(model::LinearImpl& linear, const torch::Tensor& x) override;
  // The weight as the engine dequantizes it (for weight-only formats and for tests).
  torch::Tensor dequantized_weight() const;

 private:
  torch::Tensor int8_product(const torch::Tensor& x2d);
  bool factorized_product() const;
  torch::Tensor dequantized_input(const torch::Tensor& x) const;
  IntLinearTensors t_;
};

}  // namespace qtrain::quant
