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


// The linears whose input columns pruning removes, and how many columns stay together:
// down_proj (MLP channels, `multiple`), o_proj (KV groups, (heads / kv_heads) x head_dim),
// and every reader of the residual stream (hidden channels, `multiple`).
struct PrunedInputs {
  int64_t together = 0;  // 0: the linear keeps all its input columns
  const char* key = "";
};

PrunedInputs pruned_inputs(const std::string& name, const config::PruneSection& prune, const model::ModelConfig& c) {
  if (ends_with(name, "mlp.down_proj") && prune.mlp_sparsity > 0) return {prune.multiple, "prune.multiple"};
  if (ends_with(name, "self_attn.o_proj") && prune.heads_sparsity > 0)
    return {c.kv_groups() * c.head_dim, "prune.heads_sparsity"};
  const bool writer = ends_with(name, "o_proj") || ends_with(name, "down_proj") || ends_with(name, ".w2");
  if (prune.hidden_sparsity > 0 && !writer) return {prune.multiple, "prune.multiple"};
  return {};
}

// Whether pruning removes output rows of the linear `name`.
bool loses_rows(const std::string& name, const config::PruneSection& prune) {
  const bool mlp_rows = (ends_with(name, "mlp.gate_proj") || ends_with(name, "mlp.up_proj")) && name.find(".experts.") == std::string::npos;
  const bool kv_rows = ends_with(name, "q_proj") || ends_with(name, "k_proj") || ends_with(name, "v_proj");
  const bool writer = ends_with(name, "o_proj") || ends_with(name, "down_proj") || ends_with(name, ".w2");
  const bool router = ends_with(name, "mlp.gate") || ends_with(name, "block_sparse_moe.gate");
  return (prune.mlp_sparsity > 0 && mlp_rows) || (prune.heads_sparsity > 0 && kv_rows) ||
         (prune.hidden_sparsity > 0 && writer) || (prune.expert_sparsity > 0 && router);
}

// Group-wise quantization (weights or input activations) of a linear whose input columns
// are pruned: the compacted matrix must still split into whole groups, and fixed weight
// scales must follow the weights (docs/pruning.md, "Pruning and quantization").
void check_quantization_fits(const config::PruneSection& prune, const config::QuantSection& quant,
                             model::CausalLMImpl& student) {
  const auto& c = student.config();
  const bool fixed = quant.learnable_scales || quant.ptq.method == config::PtqMethod::gptq;
  const char* fixed_key = quant.learnable_scales ? "quant.learnable_scales" : "quant.method";
  for (const auto& [name, layer] : quant::fake_quant_layers(student)) {
    const auto& w = layer->scheme().weights;
    const auto inputs = pruned_inputs(name, prune, c);
    // Block scales (fp8-block) tile rows and columns alike: pruning either regroups the kept
    // ones into other blocks than the masked matrix's, so the export would not equal it.
    if (w && w->strategy == quant::Strategy::block && (inputs.together > 0 || loses_rows(name, prune)))
      throw Error("'" + name + "' loses rows or columns to pruning, but block-wise scales (" +
                  std::to_string(w->block_rows) + " x " + std::to_string(w->block_cols) +
                  ") cannot follow them: the kept ones would form other blocks")
          .key("quant.rules")
          .expected("a scheme without block scales on the pruned linears, or no pruning of their axes");
    if (inputs.together == 0) continue;
    const bool weight_groups = w && (w->strategy == quant::Strategy::group || w->strategy == quant::Strategy::tensor_group);
    if (weight_groups && fixed)
      throw Error("'" + name + "' loses input columns to pruning, but its group scales are fixed by GPTQ or learned")
          .key(fixed_key)
          .expected("min-max group scales (rtn or awq, learnable_scales false) on linears whose inputs are pruned");
    const auto& a = layer->scheme().input_activations;
    const bool input_groups = a && (a->strategy == quant::Strategy::group || a->strategy == quant::Strategy::tensor_group);
    for (const auto& [groups, what] : {std::pair<int64_t, const char*>{weight_groups ? w->group_size : 0, "weights"},
                                       std::pair<int64_t, const char*>{input_groups ? a->group_size : 0, "input activations"}}) {
      if (groups <= 0 || inputs.together % groups == 0) continue;
      const auto g = std::to_string(groups);
      throw Error("pruning keeps the input columns of '" + name + "' in runs of " + std::to_string(inputs.together) +
                  ", but its " + what + " are quantized in groups of " + g + " columns")
          .key(inputs.key)
          .expected(std::string(inputs.key) == "prune.heads_sparsity"
                        ? "0, or a group size that divides (heads / kv_heads) x head_dim"
                        : "a multiple of " + g);
    }
  }
}

// The target sizes must keep something: a layer without MLP channels or KV groups is not a
// Llama layer any more, and a multiple larger than the MLP cannot be kept at all.
void check_targets(const config::PruneSection& prune, const model::ModelConfig& c) {
  if (c.is_moe() && prune.mlp_sparsity > 0)
    throw Error("MLP-channel pruning of a mixture of experts (" + c.model_type + ") is not implemented")
        .key("prune.mlp_sparsity")
        .expected("0 for a mixture-of-experts student (prune experts with prune.expert_sparsity)");
  if (!c.is_moe() && prune.expert_sparsity > 0)
    throw Error("expert pruning needs a mixture-of-experts student; " + c.model_type + " is dense")
        .key("prune.expert_sparsity")
        .expected("0 for a dense student");
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
  if (prune.layer_sparsity > 0 && prune::kept_multiples(c.num_hidden_layers, prune.layer_sparsity, 1) == 0)
    throw Error("layer_sparsity " + std::to_string(prune.layer_sparsity) + " keeps none of the " +
                std::to_string(c.num_hidden_layers) + " decoder layers")
        .key("prune.layer_sparsity")
        .expected("below " + std::to_string(1.0 - 0.5 / static_cast<double>(c.num_hidden_layers)) +
                  " (at least one layer kept)");
  if (prune.hidden_sparsity > 0 &&
      (prune.multiple > c.hidden_size || prune::kept_multiples(c.hidden_size, prune.hidden_sparsity, prune.multiple) == 0))
    throw Error("hidden_sparsity " + std::to_string(prune.hidden_sparsity) + " keeps no multiple of " +
                std::to_string(prune.multiple) + " of the " + std::to_string(c.hidden_size) + " hidden channels")
        .key("prune.hidden_sparsity")
        .expected("a sparsity (and prune.multiple) that keeps at least " + std::to_string(prune.multiple) + " channels");
  if (prune.expert_sparsity > 0 &&
      prune::kept_multiples(c.num_experts, prune.expert_sparsity, 1) < c.num_experts_per_tok)
    throw Error("expert_sparsity " + std::to_string(prune.expert_sparsity) + " keeps fewer than num_experts_per_tok (" +
                std::to_string(c.num_experts_per_tok) + ") of the " + std::to_string(c.num_experts) + " experts")
        .key("prune.expert_sparsity")
        .expected("at most " + std::to_string(1.0 - static_cast<double>(c.num_experts_per_tok) / c.num_experts));
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
  check_targets(prune, student->config());
  check_quantization_fits(prune, quant, *student);
  return std::unique_ptr<StudentPruning>(new StudentPruning(prune, data, std::move(student), compute_dtype));
}

prune::Importance StudentPruning::importance(distill::DistillLoss& loss, FlatParameters& flat, bool width,
                                              bool layers) {
  const auto kind = section_.importance;
  const auto device = student_->model->embed_tokens->weight.device();
  // Windows of seq_len + 1 tokens: the inputs and their next-token labels, as training uses.
  const int64_t seq_len = data_.seq_len, batch_size = data_.batch_size;
  const auto sequences =
      calibration_sequences(data_.path, seq_len + 1, section_.calibration_sequences, student_->config().vocab_size)
          .to(device);
  auto for_each_batch = [&](const std::function<void(const torch::Tensor&, const torch::Tensor&)>& run) {
    for (int64_t i = 0; i < sequences.size(0); i += batch_size) {
      const auto batch = sequences.narrow(0, i, std::min(batch_size, sequences.size(0) - i));
      run(batch.narrow(1, 0, seq_len), batch.narrow(1, 1, seq_len));
    }
  };
  const prune::ForwardPasses forward_passes = [&](const std::function<void(const torch::Tensor&)>& on_batch) {
    compat::AutocastGuard autocast(device, compute_dtype_);
    for_each_batch([&](const torch::Tensor& ids, const torch::Tensor&) { on_batch(ids); });
  };
  prune::Importance scores;
  if (layers) {
    if (section_.layer_importance == config::LayerImportance::cosine)
      scores.layers = prune::cosine_layer_importance(*student_, forward_passes);
    else
      scores.layers = prune::loss_layer_importance(*student_, masks_->depth, [&] {
        torch::NoGradGuard no_grad;
        compat::AutocastGuard autocast(device, compute_dtype_);
        double sum = 0, tokens = 0;
        for_each_batch([&](const torch::Tensor& ids, const torch::Tensor& labels) {
          const auto logits = student_->forward(ids).to(torch::kFloat32);
          sum += torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}), labels.reshape({-1}),
                                                      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                     .item<double>();
          tokens += static_cast<double>(labels.numel());
        });
        return std::pair{sum / std::max(1.0, tokens), tokens};
      });
  }
  if (!width) return scores;
  const auto layer_scores = scores.layers;
  if (kind == config::Importance::magnitude) {
    scores = prune::magnitude_importance(*student_);
  } else if (kind == config::Importance::activation) {
    scores = prune::activation_importance(*student_, forward_passes);
  } else {
    scores = prune::taylor_importance(*student_, [&](const std::function<void()>& after_batch) {
      for_each_batch([&](const torch::Tensor& ids, const torch::Tensor& labels) {
        flat.zero_grad();
        loss.compute(ids, labels).total.backward();  // gradients land in the flat buffer, not synced
        after_batch();
      });
    });
    flat.zero_grad();
  }
  scores.layers = layer_scores;
  return scores;
}

prune::KeptCounts StudentPruning::targets(int64_t step) const {
  const auto& c = student_->config();
  const double progress = schedule_.progress(step);
  const auto now = prune::kept_counts(*masks_);
  prune::KeptCounts t;
  t.channels = std::min(now.channels, prune::kept_units(c.intermediate_size, section_.mlp_sparsity * progress, section_.multiple));
  t.kv_groups = std::min(now.kv_groups, prune::kept_units(c.num_key_value_heads, section_.heads_sparsity * progress, 1));
  t.experts = c.is_moe() ? std::min(now.experts, prune::kept_units(c.num_experts, section_.expert_sparsity * progress, 1)) : 0;
  t.layers = std::min(now.layers, prune::kept_units(c.num_hidden_layers, section_.layer_sparsity * progress, 1));
  t.hidden = std::min(now.hidden, prune::kept_units(c.hidden_size, section_.hidden_sparsity * progress, section_.multiple));
  return t;
}

std::string StudentPruning::update(int64_t step, distill::DistillLoss& loss, FlatParameters& flat, AdamW& optimizer) {
  const auto& c = student_->config();
  const auto now = prune::kept_counts(*masks_);
  const auto next = targets(step);
  const bool width = next.channels < now.channels || next.kv_groups < now.kv_groups || next.experts < now.experts ||
                     next.hidden < now.hidden;
  const bool layers = next.layers < now.layers;
  if (width || layers) {
    // Layers first, on the model as it is; the width scores then come from the same model.
    const auto scores = importance(loss, flat, width, layers);
    prune::grow_masks(*masks_, scores, next);
    check_ranks_agree(*masks_);
    if (c.is_moe() && masks_->kept_experts() == 0)
      throw Error("depth pruning kept only dense layers of the mixture " + c.model_type +
                  ", which its config cannot express")
          .key("prune.layer_sparsity")
          .expected("a layer_sparsity that keeps at least one sparse layer");
    refresh();
    mask_weights(&flat);
    clear_moments(optimizer, masked_);
  }
  std::string line = "pruning after step " + std::to_string(step) + ": " + std::to_string(kept_channels()) + " of " +
                     std::to_string(c.intermediate_size) + " MLP channels and " + std::to_string(kept_kv_groups()) +
                     " of " + std::to_string(c.num_key_value_heads) + " KV groups kept per layer";
  if (c.is_moe())
    line += ", " + std::to_string(masks_->kept_experts()) + " of " + std::to_string(c.num_experts) + " experts";
  line += ", " + std::to_string(masks_->kept_layers()) + " of " + std::to_string(c.num_hidden_layers) + " layers, " +
          std::to_string(masks_->kept_hidden()) + " of " + std::to_string(c.hidden_size) + " hidden channels (" +
          config::name_of(section_.importance) + ")";
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
  // The axes the job does not prune stay all-kept and are not saved, so that checkpoints of
  // jobs that prune only MLP channels and KV groups read as they always have.
  model::NamedTensors out;
  for (const auto& item : masks_->named_buffers()) {
    const auto& name = item.key();
    if ((name == "depth" && section_.layer_sparsity <= 0) || (name == "hidden" && section_.hidden_sparsity <= 0) ||
        (ends_with(name, ".experts") && section_.expert_sparsity <= 0))
      continue;
    out.emplace_back(name, item.value());
  }
  return out;
}

void StudentPruning::restored(FlatParameters* flat) {
  refresh();
  mask_weights(flat);
}

void StudentPruning::refresh() {
  masked_ = masks_->any_pruned() ? prune::masked_tensors(*student_, *masks_) : std::vector<prune::MaskedTensor>{};
  prune::apply_forward_masks(*student_, *masks_);
  set_kept_inputs(*student_, *masks_);
}

void set_kept_inputs(model::CausalLMImpl& student, const prune::StructuredMasksImpl& masks) {
  const auto& c = student.config();
  const bool channels_pruned = masks.kept_channels() < c.intermediate_size;
  const bool heads_pruned = masks.kept_kv_groups() < c.num_key_value_heads;
  const auto hidden = masks.hidden_pruned() ? masks.hidden.nonzero().reshape({-1}) : torch::Tensor();
  for (const auto& [name, layer] : quant::fake_quant_layers(student)) {
    const int i = model::decoder_layer_of(name);
    if (i >= 0 && ends_with(name, "mlp.down_proj") && !masks.layer(i).experts.defined()) {
      layer->set_kept_inputs(channels_pruned ? masks.layer(i).mlp_channels.nonzero().reshape({-1}) : torch::Tensor());
    } else if (i >= 0 && ends_with(name, "self_attn.o_proj")) {
      layer->set_kept_inputs(heads_pruned ? prune::kept_query_rows(masks.layer(i).kv_groups, c.kv_groups(), c.head_dim)
                                          : torch::Tensor());
    } else if (!ends_with(name, "down_proj") && !ends_with(name, ".w2")) {
      layer->set_kept_inputs(hidden);  // a reader of the residual stream
    }
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
  for (size_t t = 0; t < targets.size(); ++t) {
    const auto i = compacted.source_layers.at(t);
    const auto kept = masks.layer(i).kv_groups.nonzero().reshape({-1});
    // int8 keys have a scale per kv head and channel; FP8 scales are per tensor.
    const bool per_head = kv[i]->kind() == config::KvCache::int8;
    targets[t]->keys().copy_state(kv[i]->keys(), [&](const torch::Tensor& scale) {
      return per_head ? scale.index_select(0, kept.to(scale.device())) : scale;
    });
    targets[t]->values().copy_state(kv[i]->values());
  }
}

// The fake quantization of the student's linears in `unit` onto the compacted ones, whose
// weights are filled (prune::fill_unit): each layer's scheme, activation scales and the kept
// rows of fixed or learned weight scales (learned ones are parameters of the unit).
void carry_fake_quant(model::CausalLMImpl& student, prune::CompactedModel& compacted, int unit) {
  auto source_modules = student.named_modules("", false);
  const auto source_layers = quant::fake_quant_layers(student);
  for (const auto& item : compacted.model->named_modules("", false)) {
    const auto& name = item.key();
    auto* target = item.value()->as<model::LinearImpl>();
    if (!target || model::decoder_layer_of(name) != unit) continue;
    const auto layer = source_layers.find(compacted.source_name(name));
    if (layer == source_layers.end()) continue;
    const auto rows = compacted.kept_rows.count(name) ? compacted.kept_rows.at(name) : torch::Tensor();
    const auto source_rows = source_modules[layer->first]->as<model::LinearImpl>()->weight.size(0);
    target->set_wrapper("quant", layer->second->compacted(target->weight, rows, source_rows));
  }
  quant::share_fused_global_scales(*compacted.model, /*restart_learned=*/false);  // the trained scales stay
}

}  // namespace

std::string describe(const PrunedExport& e) {
  std::string out = std::to_string(e.parameters) + " parameters; " + std::to_string(e.layers) + " layers, hidden_size " +
                    std::to_string(e.hidden_size) + ", intermediate_size " + std::to_string(e.intermediate_size) + ", " +
                    std::to_string(e.attention_heads) + " attention heads, " + std::to_string(e.kv_heads) + " kv heads";
  if (e.experts > 0) out += ", " + std::to_string(e.experts) + " experts";
  return out;
}

PrunedExport export_pruned(model::CausalLMImpl& student, const prune::StructuredMasksImpl& masks,
                           const std::string& dir, const quant::ExportOptions& options) {
  auto compacted = prune::compact_skeleton(student, masks);
  const auto& c = compacted.model->config();
  PrunedExport summary;
  summary.parameters = c.num_parameters();
  summary.intermediate_size = c.intermediate_size;
  summary.attention_heads = c.num_attention_heads;
  summary.kv_heads = c.num_key_value_heads;
  summary.layers = c.num_hidden_layers;
  summary.hidden_size = c.hidden_size;
  summary.experts = c.is_moe() ? c.num_experts : 0;
  summary.quantized = !quant::fake_quant_layers(student).empty() || !quant::kv_cache_quantizers(student).empty();
  if (summary.quantized) carry_kv_cache_quantization(student, masks, compacted);
  // One unit of the student whole at a time, and its compacted copy only while it is written.
  const model::GatherUnit gather = [&](int unit, bool gathered) {
    // `unit` is the compacted model's; the student's is the one it comes from.
    if (gathered) {
      if (options.gather) options.gather(compacted.source_unit(unit), true);
      if (!options.write) return;
      prune::fill_unit(compacted, student, unit);
      if (summary.quantized) carry_fake_quant(student, compacted, unit);
    } else {
      if (options.write) prune::release_unit(compacted, unit);
      if (options.gather) options.gather(compacted.source_unit(unit), false);
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
