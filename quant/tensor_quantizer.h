// One tensor's fake quantization, the one type behind a linear's weight and input
// activations and the KV cache's keys and values (the role of ModelOpt's TensorQuantizer):
// the tensor's QuantArgs, where its scale comes from, its scale, zero-point and flag tensors,
// and the observer (observer.h) that calibrates a static scale. The owning module registers
// the tensors under its own names (input_scale, weight_scale, key_scale, ...), so that they
// travel in checkpoints and follow the module's to(device). The arithmetic is quant_math.h's.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <optional>
#include <vector>

#include "quant/observer.h"
#include "quant/quant_args.h"
#include "quant/quant_math.h"

namespace qtrain::quant {

enum class ScaleSource {
  dynamic,   // activations: from each tensor at run time, in fp32, never stored
  observed,  // static activations and KV cache: calibrated by the observer, then frozen
  weight,    // weights: min-max of the weight itself, until fixed (PTQ) or learned (LSQ)
};

struct TensorQuantizerOptions {
  ObserverOptions observer;                          // observed scales
  torch::ScalarType scale_dtype = torch::kBFloat16;  // scales are rounded through it (quant_math.h)
  bool learnable = false;                            // weights: LSQ, the scale a trainable parameter
};

class TensorQuantizer {
 public:
  // A weight's quantizer; `initial` holds min-max parameters of the weight ([units, 1]; NVFP4
  // also the global scale). Learned (LSQ) scales: symmetric integers, FP8, NVFP4's E4M3 group
  // scales (under a fixed global scale); MXFP4's powers of two are refused.
  static TensorQuantizer for_weight(const QuantArgs& args, const TensorQuantizerOptions& options,
                                    const QParams& initial);
  // An activation's (or a KV-cache tensor's): dynamic when args->dynamic, else observed. The
  // stored scale has `scale_shape` (one element per unit of unit_view). Without args the
  // quantizer is disabled and passes tensors through (a weight-only layer's input; its state
  // still exists so that every fake-quant layer has the same names). A zero point is stored
  // only with `store_zero_point` (otherwise it is zero). `shared_flag` (bool, 0-dim) is the
  // frozen flag of another quantizer of the same owner, frozen together with it.
  static TensorQuantizer for_activation(const std::optional<QuantArgs>& args, const TensorQuantizerOptions& options,
                                        std::vector<int64_t> scale_shape, bool store_zero_point,
                                        torch::Tensor shared_flag = {});

  bool enabled() const { return args_.has_value() && !bypassed_; }
  const QuantArgs& args() const { return *args_; }
  ScaleSource source() const { return source_; }
  torch::ScalarType scale_dtype() const { return options_.scale_dtype; }
  bool learned() const { return scale.requires_grad(); }

  // x -> dequantize(quantize(x)) with the parameters of qparams(x); x itself while observing
  // (the observer records it) and when disabled. `for_matmul`: the weight operand of a
  // matmul (quant_math.h's fake_quantize_for_matmul).
  torch::Tensor forward(const torch::Tensor& x, bool for_matmul = false);
  // The parameters that quantize `x` now, [units, 1]: computed from x (dynamic; a weight's
  // min-max), stored (observed and frozen; a fixed weight's), or learned (clamped, rounded
  // through the storage dtype with a straight-through gradient).
  QParams qparams(const torch::Tensor& x) const;
  // The stored parameters, [units, 1] (zeros for a zero point that is not stored).
  QParams stored() const;
  // Sets the parameters ([units, 1], or the stored shape): a weight's stop following min-max,
  // an observed scale is frozen (PTQ, SmoothQuant, a loaded checkpoint, tests).
  void set(const QParams& qp);
  // The flag: frozen (observed) or fixed (weight); learned weights count as fixed.
  bool is_set() const { return set_host_; }
  // Re-reads the flag after the state was loaded (the forward reads a host copy, so that it
  // never waits for the GPU).
  void refresh_from_state();
  // PTQ lets inputs through unquantized while it measures them.
  void set_bypass(bool bypass) { bypassed_ = bypass; }
  // NVFP4 weights: where the global scale of a weight that follows min-max comes from, given
  // the weight (default: its own absmax). Fused layers (q/k/v, gate/up) share one, that of
  // their largest absmax, as llm-compressor exports it and vLLM requires.
  using GlobalScaleSource = std::function<torch::Tensor(const torch::Tensor& weight)>;
  void set_global_scale_source(GlobalScaleSource source) { global_source_ = std::move(source); }
  // The global scale that quantizes `weight` now (stored once fixed or learned).
  torch::Tensor global_scale_for(const torch::Tensor& weight) const;

  // Calibration of an observed scale, on all ranks in the same order: for pass in
  // [0, calibration_passes()): begin_pass, the batches through the model, end_pass (the
  // statistics reduced over the ranks, a collective); then freeze.
  bool needs_calibration() const { return args_ && source_ == ScaleSource::observed; }
  int calibration_passes() const { return needs_calibration() ? observer_.passes() : 0; }
  void begin_pass(int pass);
  void end_pass();
  void freeze();
  // After end_pass: whether any rank observed data, the observed absmax, and the statistics
  // of another quantizer of the same args taken over (a never-routed expert's inputs).
  bool observed_any() const { return observer_.seen(); }
  double observed_absmax() const { return observer_.absmax(); }
  void adopt_observations(const TensorQuantizer& other);

  // This quantizer's state from `source` (same args), the stored tensors passed through
  // `select` (kept rows or kv heads of a pruned layer; identity when empty). A weight's
  // parameters are copied only when `source` has them fixed (otherwise they follow min-max).
  void copy_state(const TensorQuantizer& source,
                  const std::function<torch::Tensor(const torch::Tensor&)>& select = {});

  // State, registered by the owner: the scale (a parameter when learned; buffer otherwise),
  // the zero point (undefined when not stored), the bool flag, and NVFP4's global scale ([1]
  // fp32; undefined for other args). For NVFP4 activations (dynamic "local") the global scale
  // is the calibrated part and `scale` is unused.
  torch::Tensor scale, zero_point, flag, global_scale;

 private:
  TensorQuantizer(std::optional<QuantArgs> args, ScaleSource source, TensorQuantizerOptions options);
  QParams stored_units() const;
  std::optional<QuantArgs> args_;
  ScaleSource source_;
  TensorQuantizerOptions options_;
  Observer observer_;
  GlobalScaleSource global_source_;
  bool observing_ = false, bypassed_ = false, set_host_ = false;
};

}  // namespace qtrain::quant
