// Attaching, growing, holding, checkpointing and exporting the student's pruning masks.
#include "trainer/pruning.h"

#include <cstdio>
#include <map>

#include "common/compat.h"
#include "common/dist.h"
#include "common/error.h"
#include "model/hf_checkpoint.h"
#include "prune/compact.h"
#include "prune/importance.h"
#include "quant/export.h"
#include "quant/kv_cache_quant.h"
#include "quant/quantized_model.h"
#include "trainer/quantization.h"
#include "common/strings.h"

namespace qtrain::trainer {

namespace {


// Group-wise weight quantization of a linear whose input columns are pruned: the compacted
// matrix must still split into whole groups, and the scales must follow the weights
// (docs/pruning.md, "Pruning and quantization").
void check_quantization_fits(const config::PruneSection& prune, const config::QuantSection& quant,
                             model::CausalLMImpl& student) {
  const auto& c = student.config();
  for (const auto& [name, layer] : quant::fake_quant_layers(student)) {
    const auto& w = layer->scheme().weights;
    if (!w) continue;
    // Block scales (fp8-block) tile rows and columns alike: pruning either moves them.
    if (w->strategy == quant::Strategy::block && (prune.mlp_sparsity > 0 || prune.heads_sparsity > 0) &&
        (quant.learnable_scales || quant.ptq.method == config::PtqMethod::gptq))
      throw Error("'" + name + "' is pruned, but its block scales are fixed by GPTQ or learned")
          .key(quant.learnable_scales ? "quant.learnable_scales" : "quant.method")
          .expected("min-max block scales (rtn, learnable_scales false) with pruning");
    if (w->strategy != quant::Strategy::group && w->strategy != quant::Strategy::tensor_group) continue;
    const bool down = ends_with(name, "mlp.down_proj") && prune.mlp_sparsity > 0;
    const bool o = ends_with(name, "self_attn.o_proj") && prune.heads_sparsity > 0;
    if (!down && !o) continue;
    const auto g = std::to_string(w->group_size);
    if (quant.learnable_scales || quant.ptq.method == config::PtqMethod::gptq)
      throw Error("'" + name + "' loses input columns to pruning, but its group scales are fixed by GPTQ or learned")
          .key(quant.learnable_scales ? "quant.learnable_scales" : "quant.method")
          .expected("min-max group scales (rtn or awq, learnable_scales false) on pruned down_proj / o_proj");
    if (down && prune.multiple % w->group_size != 0)
      throw Error("kept MLP channels are multiples of " + std::to_string(prune.multiple) + ", but '" + name +
                  "' is quantized in groups of " + g + " input columns")
          .key("prune.multiple")
          .expected("a multiple of " + g);
    if (o && (c.kv_groups() * c.head_dim) % w->group_size != 0)
      throw Error("a KV group spans " + std::to_string(c.kv_groups() * c.head_dim) + " input columns of '" + name +
                  "', not a whole number of its groups of " + g)
          .key("prune.heads_sparsity")
          .expected("0, or a group size that divides (heads / kv_heads) x head_dim");
  }
}

// The target sizes must keep something: a layer without MLP channels or KV groups is not a
// Llama layer any more, and a multiple larger than the MLP cannot be kept at all.
void check_targets(const config::PruneSection& prune, const model::ModelConfig& c) {
  if (prune.mlp_sparsity > 0 && prune.multiple > c.intermediate_size)
    throw Error("prune.multiple " + std::to_string(prune.multiple) + " exceeds the student's intermediate_size " +
                std::to_string(c.intermediate_size))
        .key("prune.multiple")
        .expected("at most " + std::to_string(c.intermediate_size));
  if (prune.mlp_sparsity > 0 && prune::kept_multiples(c.intermediate_size, prune.mlp_sparsity, prune.multiple) == 0)
    throw Error("mlp_sparsity " + std::to_string(prune.mlp_sparsity) + " keeps no multiple of " +
                std::to_string(prune.multiple) + " of the " + std::to_string(c.intermediate_size) + " MLP channels")
        .key("prune.mlp_sparsity")
        .expected("a sparsity that keeps at least " + std::to_string(prune.multiple) + " channels");
  if (prune.heads_sparsity > 0 && prune::kept_multiples(c.num_key_value_heads, prune.heads_sparsity, 1) == 0)
    throw Error("heads_sparsity " + std::to_string(prune.heads_sparsity) + " keeps none of the " +
                std::to_string(c.num_key_value_heads) + " KV groups")
        .key("prune.heads_sparsity")
        .expected("below " + std::to_string(1.0 - 0.5 / static_cast<double>(c.num_key_value_heads)) +
                  " (at least one group kept)");
}

// Pruned entries get no update only if their AdamW moments are zero as well.
void clear_moments(AdamW& optimizer, const std::vector<prune::MaskedTensor>& masked) {
  for (const auto& m : masked) optimizer.mask_state(m.name, m.keep);  // the owned part (ZeRO-1) or all of it
}

// Every rank must hold the same masks, or the replicas drift apart silently.
void check_ranks_agree(const prune::StructuredMasksImpl& masks) {
  double checksum[1] = {0.0};
  for (const auto& b : masks.buffers()) {
    const auto weights = torch::arange(1, b.numel() + 1, torch::kFloat64);
    checksum[0] += (b.cpu().to(torch::kFloat64) * weights).sum().item<double>() * static_cast<double>(b.numel());
  }
  double low[1] = {checksum[0]}, high[1] = {checksum[0]};
  dist::allreduce_min(low, 1);
  dist::allreduce_max(high, 1);
  TORCH_CHECK(low[0] == high[0], "ranks disagree on the pruning masks");
}

}  // namespace

StudentPruning::StudentPruning(const config::PruneSection& prune, const CalibrationData& data, model::CausalLM student,
                               torch::ScalarType compute_dtype)
    : section_(prune), data_(data), compute_dtype_(compute_dtype), student_(std::move(student)) {
  masks_ = prune::StructuredMasks(student_->config(), student_->model->embed_tokens->weight.device());
  schedule_.kind = section_.schedule;
  schedule_.start_step = section_.start_step;
  schedule_.end_step = section_.end_step;
  schedule_.every_steps = section_.every_steps;
}

std::unique_ptr<StudentPruning> StudentPruning::attach(const config::PruneSection& prune,
                                                       const config::QuantSection& quant, const CalibrationData& data,
                                                       model::CausalLM student, torch::ScalarType compute_dtype) {
  if (!prune.enabled()) return nullptr;
  if (student->config().is_moe())
    throw Error("structured pruning of mixture-of-experts models (" + student->config().model_type + ") is not implemented")
        .key(prune.mlp_sparsity > 0 ? "prune.mlp_sparsity" : "prune.heads_sparsity")
        .expected("0 for a mixture-of-experts student");
  check_targets(prune, student->config());
  check_quantization_fits(prune, quant, *student);
  return std::unique_ptr<StudentPruning>(new StudentPruning(prune, data, std::move(student), compute_dtype));
}

prune::Importance StudentPruning::importance(distill::DistillLoss& loss, FlatParameters& flat) {
  const auto kind = section_.importance;
  if (kind == config::Importance::magnitude) return prune::magnitude_importance(*student_);
  const auto device = student_->model->embed_tokens->weight.device();
  // Windows of seq_len + 1 tokens: the inputs and their next-token labels, as training uses.
  const int64_t seq_len = data_.seq_len, batch_size = data_.batch_size;
  const auto sequences = calibration_sequences(data_.path, seq_len + 1, section_.calibration_sequences).to(device);
  auto for_each_batch = [&](const std::function<void(const torch::Tensor&, const torch::Tensor&)>& run) {
    for (int64_t i = 0; i < sequences.size(0); i += batch_size) {
      const auto batch = sequences.narrow(0, i, std::min(batch_size, sequences.size(0) - i));
      run(batch.narrow(1, 0, seq_len), batch.narrow(1, 1, seq_len));
    }
  };
  if (kind == config::Importance::activation)
    return prune::activation_importance(*student_, [&] {
      compat::AutocastGuard autocast(device, compute_dtype_);
      for_each_batch([&](const torch::Tensor& ids, const torch::Tensor&) { student_->forward(ids); });
    });
  auto scores = prune::taylor_importance(*student_, [&](const std::function<void()>& after_batch) {
    for_each_batch([&](const torch::Tensor& ids, const torch::Tensor& labels) {
      flat.zero_grad();
      loss.compute(ids, labels).total.backward();  // gradients land in the flat buffer, not synced
      after_batch();
    });
  });
  flat.zero_grad();
  return scores;
}

std::string StudentPruning::update(int64_t step, distill::DistillLoss& loss, FlatParameters& flat, AdamW& optimizer) {
  const auto& c = student_->config();
  const double progress = schedule_.progress(step);
  const int64_t channels = std::min(
      kept_channels(), prune::kept_units(c.intermediate_size, section_.mlp_sparsity * progress, section_.multiple));
  const int64_t groups =
      std::min(kept_kv_groups(), prune::kept_units(c.num_key_value_heads, section_.heads_sparsity * progress, 1));
  if (channels < kept_channels() || groups < kept_kv_groups()) {
    const auto scores = importance(loss, flat);
    prune::grow_masks(*masks_, scores, channels, groups);
    check_ranks_agree(*masks_);
    refresh();
    mask_weights(&flat);
    clear_moments(optimizer, masked_);
  }
  char line[200];
  std::snprintf(line, sizeof(line), "pruning after step %lld: %lld of %lld MLP channels and %lld of %lld KV groups kept per layer (%s)",
                (long long)step, (long long)kept_channels(), (long long)c.intermediate_size, (long long)kept_kv_groups(),
                (long long)c.num_key_value_heads, config::name_of(section_.importance));
  return line;
}

namespace {

// Multiplies this rank's part of each masked tensor, in the values or the gradients of
// `flat`, by its keep factor.
void mask_owned(const std::vector<prune::MaskedTensor>& masked, FlatParameters& flat, bool gradients) {
  torch::NoGradGuard no_grad;
  for (const auto& m : masked) {
    const auto piece = flat.owned_piece(m.name);
    QT_REQUIRE(piece, "pruned tensor " + m.name + " is not trainable");
    if (piece->length == 0) continue;
    const auto keep = m.keep.expand(m.tensor.sizes())
                          .reshape({-1})
                          .narrow(0, piece->param_begin, piece->length)
                          .to(flat.storage_device());  // host memory with offload
    (gradients ? flat.grads_at(piece->flat_begin, piece->length) : flat.values_at(piece->flat_begin, piece->length))
        .mul_(keep);
  }
}

}  // namespace

void StudentPruning::mask_gradients(FlatParameters& flat) { mask_owned(masked_, flat, true); }

void StudentPruning::mask_weights(FlatParameters* flat) {
  if (!flat || !flat->owns_values_only()) {  // every rank holds every weight
    torch::NoGradGuard no_grad;
    for (auto& m : masked_) m.tensor.mul_(m.keep);
    return;
  }
  mask_owned(masked_, *flat, false);
}

model::NamedTensors StudentPruning::state() {
  model::NamedTensors out;
  for (const auto& item : masks_->named_buffers()) out.emplace_back(item.key(), item.value());
  return out;
}

void StudentPruning::restored(FlatParameters* flat) {
  refresh();
  mask_weights(flat);
}

void StudentPruning::refresh() {
  masked_ = masks_->any_pruned() ? prune::masked_tensors(*student_, *masks_) : std::vector<prune::MaskedTensor>{};
  set_kept_inputs(*student_, *masks_);
}

void set_kept_inputs(model::CausalLMImpl& student, const prune::StructuredMasksImpl& masks) {
  const auto& c = student.config();
  const bool channels_pruned = masks.kept_channels() < c.intermediate_size;
  const bool heads_pruned = masks.kept_kv_groups() < c.num_key_value_heads;
  auto layers = quant::fake_quant_layers(student);
  for (int64_t i = 0; i < masks.num_layers(); ++i) {
    const auto prefix = "model.layers." + std::to_string(i) + ".";
    const auto& m = masks.layer(i);
    if (const auto it = layers.find(prefix + "mlp.down_proj"); it != layers.end())
      it->second->set_kept_inputs(channels_pruned ? m.mlp_channels.nonzero().reshape({-1}) : torch::Tensor());
    if (const auto it = layers.find(prefix + "self_attn.o_proj"); it != layers.end())
      it->second->set_kept_inputs(heads_pruned ? prune::kept_query_rows(m.kv_groups, c.kv_groups(), c.head_dim)
                                               : torch::Tensor());
  }
}

namespace {

// The student's KV-cache scales onto the compacted model, those of the kept kv heads
// (replicated buffers: no unit needs to be whole).
void carry_kv_cache_quantization(model::CausalLMImpl& student, const prune::StructuredMasksImpl& masks,
                                 prune::CompactedModel& compacted) {
  const auto kv = quant::kv_cache_quantizers(student);
  if (kv.empty()) return;
  quant::attach_kv_cache_quant(*compacted.model, kv.front()->kind());
  const auto targets = quant::kv_cache_quantizers(*compacted.model);
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < kv.size(); ++i) {
    const auto kept = masks.layer(static_cast<int64_t>(i)).kv_groups.nonzero().reshape({-1});
    // int8 keys have a scale per kv head and channel; FP8 scales are per tensor.
    const bool per_head = kv[i]->kind() == config::KvCache::int8;
    targets[i]->keys().copy_state(kv[i]->keys(), [&](const torch::Tensor& scale) {
      return per_head ? scale.index_select(0, kept.to(scale.device())) : scale;
    });
    targets[i]->values().copy_state(kv[i]->values());
  }
}

// The fake quantization of the student's linears in `unit` onto the compacted ones, whose
// weights are filled (prune::fill_unit): each layer's scheme, activation scales and the kept
// rows of fixed or learned weight scales (learned ones are parameters of the unit).
void carry_fake_quant(model::CausalLMImpl& student, prune::CompactedModel& compacted, int unit) {
  auto target_modules = compacted.model->named_modules("", false);
  auto source_modules = student.named_modules("", false);
  for (const auto& [name, layer] : quant::fake_quant_layers(student)) {
    if (model::decoder_layer_of(name) != unit) continue;
    auto* target = target_modules[name]->as<model::LinearImpl>();
    const auto rows = compacted.kept_rows.count(name) ? compacted.kept_rows.at(name) : torch::Tensor();
    const auto source_rows = source_modules[name]->as<model::LinearImpl>()->weight.size(0);
    target->set_wrapper("quant", layer->compacted(target->weight, rows, source_rows));
  }
  quant::share_fused_global_scales(*compacted.model, /*restart_learned=*/false);  // the trained scales stay
}

}  // namespace

PrunedExport export_pruned(model::CausalLMImpl& student, const prune::StructuredMasksImpl& masks,
                           const std::string& dir, const quant::ExportOptions& options) {
  auto compacted = prune::compact_skeleton(student, masks);
  const auto& c = compacted.model->config();
  PrunedExport summary;
  summary.parameters = c.num_parameters();
  summary.intermediate_size = c.intermediate_size;
  summary.attention_heads = c.num_attention_heads;
  summary.kv_heads = c.num_key_value_heads;
  summary.quantized = !quant::fake_quant_layers(student).empty() || !quant::kv_cache_quantizers(student).empty();
  if (summary.quantized) carry_kv_cache_quantization(student, masks, compacted);
  // One unit of the student whole at a time, and its compacted copy only while it is written.
  const model::GatherUnit gather = [&](int unit, bool gathered) {
    if (gathered) {
      if (options.gather) options.gather(unit, true);
      if (!options.write) return;
      prune::fill_unit(compacted, student, unit);
      if (summary.quantized) carry_fake_quant(student, compacted, unit);
    } else {
      if (options.write) prune::release_unit(compacted, unit);
      if (options.gather) options.gather(unit, false);
    }
  };
  if (!summary.quantized) {
    model::SaveOptions save;
    save.max_shard_bytes = options.max_shard_bytes;
    save.gather = gather;
    save.write = options.write;
    model::save_causal_lm(*compacted.model, dir, save);
    if (options.write) quant::copy_tokenizer_files(options.tokenizer_source, dir);
    return summary;
  }
  auto streamed = options;
  streamed.gather = gather;
  summary.errors = quant::export_compressed_tensors(*compacted.model, dir, streamed).errors;
  return summary;
}

}  // namespace qtrain::trainer
