// Attaching, initialising and checkpointing the student's quantization.
#include "trainer/quantization.h"

#include <optional>

#include "common/compat.h"
#include "common/dist.h"
#include "common/error.h"
#include "data/token_file.h"
#include "quant/kv_cache_quant.h"
#include "quant/ptq.h"
#include "quant/quantized_model.h"
#include "trainer/sharded_model.h"

namespace qtrain::trainer {

CalibrationData calibration_data(const config::DataSection& data) {
  CalibrationData out;
  out.path = data.train;
  out.seq_len = data.seq_len;
  out.batch_size = data.micro_batch_size;
  return out;
}

torch::ScalarType stored_dtype(config::StoredDtype dtype) {
  switch (dtype) {
    case config::StoredDtype::fp32: return torch::kFloat32;
    case config::StoredDtype::fp16: return torch::kFloat16;
    case config::StoredDtype::bf16: break;
  }
  return torch::kBFloat16;
}

namespace {

quant::FakeQuantOptions fake_quant_options(const config::QuantSection& q) {
  quant::FakeQuantOptions o;
  o.observer.kind = q.observer;
  o.observer.ema_decay = q.ema_decay;
  o.observer.percentile = q.percentile;
  o.learnable_scales = q.learnable_scales;
  o.scale_dtype = stored_dtype(q.scale_dtype);
  return o;
}

}  // namespace

bool attach_quantization(const config::QuantSection& quant, model::CausalLMImpl& student) {
  quant::attach_kv_cache_quant(student, quant.kv_cache);
  if (quant.rules.empty()) return quant.kv_cache != config::KvCache::none;
  const auto assignment = quant::assign_schemes(student, quant::parse_rules(quant.rules));
  if (assignment.empty())
    throw Error("no linear layer matches quant.rules").key("quant.rules").expected("patterns that match module names such as model.layers.0.mlp.down_proj");
  quant::attach_fake_quant(student, assignment, fake_quant_options(quant));
  return true;
}

torch::Tensor calibration_sequences(const std::string& path, int64_t seq_len, int64_t count, int64_t vocab_size) {
  auto tokens = data::TokenFile::open(path);
  data::check_vocabulary(tokens, vocab_size);
  count = std::min(count, tokens.size() / seq_len);
  std::vector<torch::Tensor> rows;
  for (int64_t i = dist::rank(); i < count; i += dist::world_size()) {
    rows.push_back(tokens.read(i * seq_len, seq_len));
    data::check_token_range(rows.back(), vocab_size, path, i * seq_len);
  }
  if (rows.empty()) return torch::empty({0, seq_len}, torch::kInt64);
  return torch::stack(rows);
}

void initialize_quantization(const config::QuantSection& quant, const CalibrationData& data,
                             model::CausalLMImpl& student, torch::ScalarType compute_dtype, ShardedModel* sharded,
                             const std::function<void(int layer)>& on_layer) {
  const auto device = student.model->embed_tokens->weight.device();
  const auto sequences =
      calibration_sequences(data.path, data.seq_len, quant.calibration_sequences, student.config().vocab_size).to(device);
  const int64_t batch = data.batch_size;
  auto run_batches = [&] {
    compat::AutocastGuard autocast(device, compute_dtype);
    for (int64_t i = 0; i < sequences.size(0); i += batch)
      student.forward(sequences.narrow(0, i, std::min(batch, sequences.size(0) - i)));
  };
  std::optional<ShardedModel::Scope> root;
  if (sharded) root.emplace(sharded->gather_root(/*write_back=*/true));
  const quant::HoldLayer hold = [sharded, &on_layer](int layer) -> std::shared_ptr<void> {
    if (on_layer) on_layer(layer);
    if (!sharded) return nullptr;
    return std::make_shared<ShardedModel::Scope>(sharded->gather_unit(layer, /*write_back=*/true));
  };
  quant::run_ptq(student, quant.ptq, run_batches, hold);
  quant::calibrate_activations(student, run_batches);
}

void refresh_quantization(model::CausalLMImpl& student) {
  for (auto& [name, layer] : quant::fake_quant_layers(student)) layer->refresh_from_buffers();
}

}  // namespace qtrain::trainer
