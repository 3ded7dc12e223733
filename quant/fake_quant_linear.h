// Fake quantization of one linear layer during training (QAT): it takes over the layer's
// forward (model::LinearWrapper) and computes linear(fq(x), fq(W)) with two tensor quantizers
// (tensor_quantizer.h), one for the weight and one for the input. Weight scales follow the
// current weights (min-max per the scheme's strategy), or are fixed by a PTQ method (GPTQ,
// AWQ), or are learned (LSQ) when enabled. Static activation scales are calibrated by an
// observer, then frozen: freeze() bumps `scale_version`, and nothing changes them afterwards
// (the optimizer never sees them). All state is registered, so it travels in checkpoints.
// Structured pruning (docs/pruning.md) may remove input columns: the layer then multiplies
// only the kept columns, quantized as the compacted export quantizes them
// (set_kept_inputs), and compacted() carries the state to the exported, smaller layer.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <optional>
#include <vector>

#include "model/layers.h"
#include "quant/observer.h"
#include "quant/quant_args.h"
#include "quant/quant_math.h"
#include "quant/tensor_quantizer.h"

namespace qtrain::quant {

struct FakeQuantOptions {
  ObserverOptions observer;
  bool learnable_scales = false;  // LSQ on weight scales
  torch::ScalarType scale_dtype = torch::kBFloat16;
};

class FakeQuantLinear : public model::LinearWrapper {
 public:
  FakeQuantLinear(Scheme scheme, FakeQuantOptions options, const torch::Tensor& weight);
  torch::Tensor forward(model::LinearImpl& linear, const torch::Tensor& x) override;

  const Scheme& scheme() const { return scheme_; }
  torch::ScalarType scale_dtype() const { return options_.scale_dtype; }
  // The weight's quantizer (scheme().weights only) and the input's (disabled for weight-only
  // schemes; its state exists for every layer). State names: weight_scale (a parameter under
  // LSQ), weight_zero_point, weight_fixed; input_scale, input_zero_point, frozen.
  TensorQuantizer& weights() { return *weights_; }
  const TensorQuantizer& weights() const { return *weights_; }
  TensorQuantizer& inputs() { return inputs_; }
  const TensorQuantizer& inputs() const { return inputs_; }

  // Calibration of a static input scale (quantized_model.h's calibrate_activations).
  void freeze();
  // NVFP4: the layers that inference engines fuse with this one (`self`, the linear this
  // layer wraps, and its q/k/v or gate/up `siblings`, raw pointers into the same model) share
  // one global scale, from the largest absmax among them (state name weight_global_scale;
  // input_global_scale for activations). Learned scales start again under it.
  // `restart_learned` false keeps learned scales as they are (a pruned export's compacted
  // layers, which carry the trained ones).
  void share_global_scale(model::LinearImpl& self, const std::vector<model::LinearImpl*>& siblings,
                          bool restart_learned = true);
  // Re-reads the flags after the state was loaded from a checkpoint.
  void refresh_from_buffers();

  // Min-max of `weight`, the parameters a new layer starts with (for a weight that had no
  // values when the layer was made: model::Skeleton; ZeRO-3 start-up sets them).
  QParams initial_weight_qparams(const torch::Tensor& weight) const;

  // Pruned input columns (down_proj's MLP channels, o_proj's heads): the forward becomes
  // linear(fq(x[.., kept]), fq(W[:, kept])), the GEMM of the exported layer with its pruned
  // columns removed. This matters for group-wise scales: groups of `group_size` consecutive
  // columns of the compacted matrix are not those of the masked one, so quantizing the
  // masked matrix would give other scales than the export. `kept` is the int64 index of the
  // kept columns, undefined = all. Refused for fixed or learned group scales (their shape
  // is the uncompacted one). The pruning code sets it; it is derived state and not saved.
  void set_kept_inputs(torch::Tensor kept);
  const torch::Tensor& kept_inputs() const { return kept_inputs_; }
  // A layer for the compacted weight `weight` (the kept rows `kept_rows` of this layer's
  // `source_rows` rows, undefined = all, and the kept input columns): the same scheme and
  // options, activation scales and flags, and fixed or learned weight scales of the kept rows.
  std::shared_ptr<FakeQuantLinear> compacted(const torch::Tensor& weight, const torch::Tensor& kept_rows,
                                             int64_t source_rows) const;

  torch::Tensor scale_version;  // int64 buffer, bumped when the input scale is frozen

 private:
  QParams placeholder_qparams(const torch::Tensor& weight) const;
  Scheme scheme_;
  FakeQuantOptions options_;
  std::optional<TensorQuantizer> weights_;
  TensorQuantizer inputs_;
  torch::Tensor kept_inputs_;
};

}  // namespace qtrain::quant
