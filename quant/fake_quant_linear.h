// Fake quantization of one linear layer during training (QAT): it takes over the layer's
// forward (model::LinearWrapper) and computes linear(fq(x), fq(W)) with the arithmetic of
// quant_math.h. Weight scales follow the current weights (min-max per the scheme's
// strategy), or are fixed by a PTQ method (GPTQ, AWQ: set_weight_qparams), or are learned
// (LSQ) when enabled. Static activation scales are calibrated by
// an observer, then frozen: calibrate() ... freeze() bumps `scale_version`, and nothing
// changes them afterwards (the optimizer never sees them). All state is registered, so it
// travels in checkpoints. Structured pruning (docs/pruning.md) may remove input columns: the
// layer then multiplies only the kept columns, quantized as the compacted export quantizes
// them (set_kept_inputs), and compacted() carries the state to the exported, smaller layer.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>

#include "model/layers.h"
#include "quant/observer.h"
#include "quant/quant_args.h"
#include "quant/quant_math.h"

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
  bool needs_calibration() const { return scheme_.input_activations && !scheme_.input_activations->dynamic; }
  // Calibration protocol (all ranks, same order): for pass in [0, passes): begin_pass, run
  // batches through the model (observe mode), end_pass; then freeze().
  int calibration_passes() const { return observer_.passes(); }
  void begin_pass(int pass);
  void end_pass();
  void freeze();
  bool frozen() const { return frozen_host_; }
  // PTQ hooks: a function that sees every input of this layer (Hessians, activation
  // statistics), and a switch that lets inputs through unquantized before calibration.
  void set_input_hook(std::function<void(const torch::Tensor&)> hook) { input_hook_ = std::move(hook); }
  void set_activation_bypass(bool bypass) { bypass_activations_ = bypass; }

  // Re-reads the flags from the buffers after they were loaded from a checkpoint (the
  // forward reads host copies, so that it never waits for the GPU).
  void refresh_from_buffers();

  // Min-max of `weight`, the parameters a new layer starts with (for a weight that had no
  // values when the layer was made: model::Skeleton; ZeRO-3 start-up sets them).
  QParams initial_weight_qparams(const torch::Tensor& weight) const;
  // The weight's quantization parameters now (learned, fixed or min-max), as exported.
  QParams weight_qparams(const torch::Tensor& weight) const;
  QParams input_qparams() const;  // static activations, after freeze()
  // Fixes the weight's scales and zero points (PTQ): they no longer follow min-max.
  void set_weight_qparams(const QParams& qp);
  // Sets the static input range directly (SmoothQuant, tests) and freezes it.
  void set_input_qparams(const QParams& qp);

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

  // Weight scales and zero points [units, 1]: a trainable parameter under LSQ, else buffers
  // that are used when weight_fixed is set.
  torch::Tensor weight_scale, weight_zero_point, weight_fixed;
  torch::Tensor input_scale, input_zero_point;  // [1, 1] buffers
  torch::Tensor frozen_, scale_version;         // buffers: bool, int64

 private:
  QParams placeholder_qparams(const torch::Tensor& weight) const;
  torch::Tensor quantize_input(const torch::Tensor& x);
  Scheme scheme_;
  FakeQuantOptions options_;
  Observer observer_;
  bool observing_ = false;
  bool fixed_host_ = false, frozen_host_ = false;
  bool bypass_activations_ = false;
  std::function<void(const torch::Tensor&)> input_hook_;
  torch::Tensor kept_inputs_;
};

}  // namespace qtrain::quant
