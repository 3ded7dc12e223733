// The job's structured pruning of the student (config section `prune`, docs/pruning.md):
// masks over KV groups, MLP channels, experts, decoder layers and hidden channels grow on the schedule from importance measured on
// calibration batches (the first prune.calibration_sequences of data.train, spread over the
// ranks), hold through every optimizer step (pruned weights, their gradients and their AdamW
// moments stay exactly zero), travel in checkpoints (prune.safetensors), and are removed for
// real at export, after which the student is also quantized when fake quantization is on.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "config/job_config.h"
#include "distill/distill_loss.h"
#include "model/causal_lm.h"
#include "model/safetensors.h"
#include "prune/masks.h"
#include "prune/schedule.h"
#include "quant/export.h"
#include "quant/quant_error.h"
#include "trainer/adamw.h"
#include "trainer/flat_parameters.h"
#include "trainer/quantization.h"

namespace qtrain::trainer {

class StudentPruning {
 public:
  // Null when `prune` asks for nothing. Call after quantization is attached: the kept sizes
  // must suit the group sizes of a quantized down_proj / o_proj (`quant`, docs/pruning.md).
  // The importance passes run on `data`'s calibration sequences.
  static std::unique_ptr<StudentPruning> attach(const config::PruneSection& prune, const config::QuantSection& quant,
                                                const CalibrationData& data, model::CausalLM student,
                                                torch::ScalarType compute_dtype);

  // Whether the masks are recomputed after `step` optimizer steps.
  bool due(int64_t step) const { return schedule_.is_update_step(step); }
  // All ranks together: importance on the calibration batches, masks grown to the
  // schedule's sizes at `step`, newly pruned weights and their AdamW moments zeroed. `loss`
  // and `flat` serve the taylor backward passes. Returns a one-line summary.
  std::string update(int64_t step, distill::DistillLoss& loss, FlatParameters& flat, AdamW& optimizer);

  // In the training step, before the update: the gradients of pruned entries to zero, in
  // the gradient storage of `flat` (this rank's segments from ZeRO-2 on). The pruned weights
  // then stay zero: zero gradient, zero moments, decoupled decay of zero.
  void mask_gradients(FlatParameters& flat);
  // The pruned weights to zero: in the values of `flat` when it holds only this rank's
  // segments (ZeRO-3: the fp32 masters, so that nothing is rounded through a gathered
  // copy), else in the model's parameters (`flat` null: a model without training state).
  void mask_weights(FlatParameters* flat);

  // The masks by name, for checkpoints; after restoring them, call restored().
  model::NamedTensors state();
  void restored(FlatParameters* flat = nullptr);

  const prune::StructuredMasksImpl& masks() const { return *masks_; }
  int64_t kept_channels() const { return masks_->kept_channels(); }
  int64_t kept_kv_groups() const { return masks_->kept_kv_groups(); }
  const config::PruneSection& section() const { return section_; }

 private:
  StudentPruning(const config::PruneSection& prune, const CalibrationData& data, model::CausalLM student,
                 torch::ScalarType compute_dtype);
  // Scores of the width axes (`width`) and of the layers (`layers`).
  prune::Importance importance(distill::DistillLoss& loss, FlatParameters& flat, bool width, bool layers);
  prune::KeptCounts targets(int64_t step) const;  // the schedule's kept counts after `step`
  void refresh();  // masked tensors and the fake-quant layers' kept input columns

  config::PruneSection section_;
  CalibrationData data_;
  torch::ScalarType compute_dtype_;
  model::CausalLM student_;
  prune::StructuredMasks masks_{nullptr};
  prune::PruneSchedule schedule_;
  std::vector<prune::MaskedTensor> masked_;
};

// Makes the fake-quantized down_proj / o_proj of `student`, and with hidden channels pruned
// every linear that reads the residual stream, multiply only the kept input columns (quant::FakeQuantLinear::set_kept_inputs), so that their group-wise weight scales
// and dynamic activation ranges are those of the compacted export; nothing without fake quant.
void set_kept_inputs(model::CausalLMImpl& student, const prune::StructuredMasksImpl& masks);

struct PrunedExport {
  bool quantized = false;
  int64_t parameters = 0;  // of the exported (compacted) model
  int64_t intermediate_size = 0, attention_heads = 0, kv_heads = 0, layers = 0, hidden_size = 0;
  int64_t experts = 0;  // per sparse layer; 0 for a dense model
  std::vector<quant::LayerQuantError> errors;  // of the exported quantized linears, by name
};

// "N parameters; L layers, hidden_size H, intermediate_size I, A attention heads, K kv heads
// (, E experts)".
std::string describe(const PrunedExport& e);

// Writes the student without its pruned structure to `dir`: in the compressed-tensors layout
// (in options.dtype) when fake quantization is attached (the compacted layers carry its
// state), else a plain Hugging Face folder in fp32 as trained. It streams unit by unit: a
// decoder layer is compacted only while it is written, and with options.gather (ZeRO-3) the
// student's unit is gathered for it, every rank taking part and the one with options.write
// writing. Tokenizer files are copied from options.tokenizer_source; weight files above
// options.max_shard_bytes split into shards.
PrunedExport export_pruned(model::CausalLMImpl& student, const prune::StructuredMasksImpl& masks,
                           const std::string& dir, const quant::ExportOptions& options = {});

}  // namespace qtrain::trainer
