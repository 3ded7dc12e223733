// The job's quantization on the student (config section `quant`, docs/quantization.md):
// fake-quant wrappers from the rules, then on a fresh start the PTQ initialisation and the
// calibration of static activation scales on the first calibration_sequences of the
// training data, spread over the ranks.
#pragma once
#include <functional>
#include <torch/torch.h>

#include "config/job_config.h"
#include "model/causal_lm.h"
#include "model/safetensors.h"

namespace qtrain::trainer {

// Wraps the student's linears per quant.rules and its attention per quant.kv_cache; false
// when neither asks for anything.
bool attach_quantization(const config::QuantSection& quant, model::CausalLMImpl& student);

class ShardedModel;

// Where calibration batches come from: the first sequences of a token file (data.train),
// in micro-batches.
struct CalibrationData {
  std::string path;
  int64_t seq_len = 0;
  int64_t batch_size = 1;
};
// data.train in data.seq_len sequences and data.micro_batch_size batches, as training reads it.
CalibrationData calibration_data(const config::DataSection& data);

// PTQ (quant.method) and activation calibration; `compute_dtype` as in training. With the
// student `sharded` (ZeRO-3) it holds the root unit for the whole time and each decoder layer
// only while PTQ changes it (quant::HoldLayer), the changes written back to the owned
// segments; the calibration forwards gather layer by layer. `on_layer` is told each decoder
// layer PTQ starts (the watchdog's beat: PTQ of a large model outlasts any one timeout).
void initialize_quantization(const config::QuantSection& quant, const CalibrationData& data,
                             model::CausalLMImpl& student, torch::ScalarType compute_dtype,
                             ShardedModel* sharded = nullptr, const std::function<void(int layer)>& on_layer = nullptr);

// The dtype a stored-dtype choice names (quant.scale_dtype, quant.export_dtype).
torch::ScalarType stored_dtype(config::StoredDtype dtype);

// After restoring the quantizer state (quant::split_state(...).quantizer) from a checkpoint.
void refresh_quantization(model::CausalLMImpl& student);

// The first `count` sequences of `seq_len` tokens of a token file, this rank's share
// (rank-strided), as [n, seq_len] int64; ids outside [0, vocab_size) are an Error naming
// the file and position (an embedding lookup would fail inside LibTorch, or read garbage).
torch::Tensor calibration_sequences(const std::string& path, int64_t seq_len, int64_t count, int64_t vocab_size);

}  // namespace qtrain::trainer
