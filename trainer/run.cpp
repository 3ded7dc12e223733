// run_training: set-up from the config, then the loop (step, log, evaluate, checkpoint).
#include "trainer/run.h"

#include <ATen/CPUGeneratorImpl.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>

#include "common/device.h"
#include "common/dist.h"
#include "common/error.h"
#include "common/kernels.h"
#include "common/memory.h"
#include "common/progress.h"
#include "data/token_file.h"
#include "data/tokenizer_match.h"
#include "eval/perplexity.h"
#include "eval/report.h"
#include "model/flops.h"
#include "model/hf_checkpoint.h"
#include "quant/export.h"
#include "quant/load_compressed.h"
#include "quant/model_state.h"
#include "quant/quant_error.h"
#include "trainer/checkpoint.h"
#include "trainer/fault_injection.h"
#include "trainer/lr_schedule.h"
#include "trainer/metrics_logger.h"
#include "trainer/models.h"
#include "trainer/pruning.h"
#include "trainer/quantization.h"
#include "trainer/results.h"
#include "trainer/sharded_model.h"
#include "trainer/step_profiler.h"
#include "trainer/stop_signal.h"
#include "trainer/train_step.h"
#include "trainer/training_state.h"
#include "trainer/watchdog.h"

namespace qtrain::trainer {

namespace {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

NamedTensors named(torch::nn::Module& module, const std::string& prefix = "") {
  NamedTensors out;
  for (auto& item : module.named_parameters()) out.emplace_back(prefix + item.key(), item.value());
  return out;
}


std::string tokenizer_source(const config::JobConfig& job) {
  if (!job.data.tokenizer.empty())
    return std::filesystem::is_directory(job.data.tokenizer) ? job.data.tokenizer
                                                              : std::filesystem::path(job.data.tokenizer).parent_path().string();
  return job.model.teacher == "none" ? "" : job.model.teacher;
}


// Seeded normal initialisation, so that a run is reproducible from run.seed alone.
void init_projections(torch::nn::Module& projections, double std, uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto generator = at::detail::createCPUGenerator(seed);
  for (auto& p : projections.parameters()) p.copy_(at::normal(0.0, std, p.sizes(), generator));
}

distill::DistillOptions distill_options(const config::DistillSection& d) {
  return {d.alpha, d.beta, d.temperature, d.gamma, d.hidden_loss, d.student_layers, d.teacher_layers,
          d.loss_chunk_tokens};
}

// Where a run starts: a checkpoint to resume from, or nothing.
std::optional<std::string> resume_point(const config::CheckpointSection& c, const CheckpointManager& manager) {
  if (c.resume == "none") {
    if (manager.latest())
      throw Error("this run.output_dir already holds checkpoints; refusing to start over them")
          .file(manager.dir())
          .key("checkpoint.resume")
          .expected("auto (continue), a checkpoint folder, or a new run.output_dir");
    return std::nullopt;
  }
  if (c.resume == "auto") {
    // Rank 0 picks (verifying checksums once), the others follow its step: every rank must
    // resume from the same checkpoint, whatever it reads of the files meanwhile.
    int step = -1;
    if (dist::is_main())
      if (const auto latest = manager.latest())
        step = std::stoi(std::filesystem::path(*latest).filename().string().substr(5));
    step = dist::allreduce_max(step);
    if (step < 0) return std::nullopt;
    return (std::filesystem::path(manager.dir()) / CheckpointManager::step_name(step)).string();
  }
  return c.resume;
}

// Token files made with another tokenizer than the model's are refused (docs/formats.md).
void check_token_files_tokenizer(const config::JobConfig& job) {
  std::string path = job.data.tokenizer;
  if (path.empty() && job.model.teacher != "none") {
    const auto folder = std::filesystem::path(job.model.teacher);
    if (std::filesystem::exists(folder / "tokenizer.json") || std::filesystem::exists(folder / "tokenizer.model"))
      path = folder.string();
  }
  if (path.empty()) return;
  const auto tokenizer = data::load_tokenizer(path);
  for (const auto& file : {job.data.train, job.data.validation})
    if (!file.empty()) data::check_tokenizer_fingerprint(data::TokenFile::open(file), *tokenizer);
}

double evaluate(model::CausalLMImpl& student, const config::JobConfig& job) {
  return evaluate_validation(student, job).perplexity;
}

// The compressed-tensors export of the trained student, and its integer perplexity next to
// the fake-quant one (docs/quantization.md). With ZeRO-3 (`sharded`) every rank takes part,
// gathering one decoder layer at a time, and rank 0 writes.
void export_and_compare(const config::JobConfig& job, model::CausalLMImpl& student, ShardedModel* sharded,
                        double fake_quant_ppl, MetricsLogger* metrics, int64_t step, RunResults& results) {
  const auto dir = (std::filesystem::path(job.run.output_dir) / "export").string();
  quant::ExportOptions options;
  options.tokenizer_source = tokenizer_source(job);
  options.max_shard_bytes = model::mib_to_bytes(job.run.export_shard_mb);
  options.write = dist::is_main();
  if (sharded)
    options.gather = [sharded](int unit, bool gathered) { gathered ? sharded->acquire(unit) : sharded->release(unit); };
  if (sharded || dist::is_main()) {
    const auto summary = quant::export_compressed_tensors(student, dir, options);
    if (dist::is_main()) {
      results.exported(dir, summary.errors);
      std::printf("qtrain: exported %lld quantized linears (%.3f bits per weight, %.1f MB in all) to %s\n",
                  (long long)summary.quantized_linears, summary.bits_per_quantized_weight(),
                  static_cast<double>(summary.total_bytes) / 1e6, dir.c_str());
    }
  }
  dist::barrier();
  if (job.data.validation.empty()) return;
  const auto device = student.model->embed_tokens->weight.device();
  auto exported = quant::load_for_eval(dir, {device, resolve_dtype(job.model.dtype, device)});
  const double ppl = results.measure("export", *exported, step);
  if (metrics) metrics->log(step, {{"perplexity", ppl}}, "export");
  if (dist::is_main())
    std::printf("qtrain: perplexity on %s: fake-quant student %.4f, exported integer checkpoint %.4f (%+.3f%%)\n",
                job.data.validation.c_str(), fake_quant_ppl, ppl, 100.0 * (ppl - fake_quant_ppl) / fake_quant_ppl);
}

// The pruned (and, with fake quantization, quantized) export of the trained student, and
// its perplexity next to the masked student's, which it equals (docs/pruning.md).
void export_pruned_and_compare(const config::JobConfig& job, model::CausalLMImpl& student, const StudentPruning& pruning,
                               double masked_ppl, MetricsLogger* metrics, int64_t step, RunResults& results) {
  const auto dir = (std::filesystem::path(job.run.output_dir) / "export").string();
  bool quantized = false;
  if (dist::is_main()) {
    const auto summary = export_pruned(student, pruning.masks(), dir, tokenizer_source(job), model::mib_to_bytes(job.run.export_shard_mb));
    results.exported(dir, quant::weight_quant_errors(student));
    quantized = summary.quantized;
    std::printf("qtrain: exported the pruned student%s (%lld parameters; intermediate_size %lld, %lld attention heads, "
                "%lld kv heads) to %s\n",
                summary.quantized ? ", quantized," : "", (long long)summary.parameters, (long long)summary.intermediate_size,
                (long long)summary.attention_heads, (long long)summary.kv_heads, dir.c_str());
  }
  dist::barrier();
  if (job.data.validation.empty()) return;
  quantized = dist::allreduce_max(quantized ? 1 : 0) > 0;
  const auto device = student.model->embed_tokens->weight.device();
  const model::LoadOptions options{device, resolve_dtype(job.model.dtype, device)};
  auto exported = quantized ? quant::load_for_eval(dir, options) : model::load_causal_lm(dir, options);
  const double ppl = results.measure("export", *exported, step);
  if (metrics) metrics->log(step, {{"perplexity", ppl}}, "export");
  if (dist::is_main())
    std::printf("qtrain: perplexity on %s: masked student %.4f, exported pruned checkpoint %.4f (%+.3f%%)\n",
                job.data.validation.c_str(), masked_ppl, ppl, 100.0 * (ppl - masked_ppl) / masked_ppl);
}

// The run report (docs/report.md): its results table on stdout, then where the page is; a
// run that trained to the end does not fail over it.
void write_report(const std::string& output_dir) {
  try {
    const auto path = eval::write_report(output_dir);
    std::printf("\n%s\n", eval::render_results_markdown(eval::read_run(output_dir)).c_str());
    std::printf("qtrain: report %s\n", path.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qtrain: warning: no report: %s\n", e.what());
  }
}

// What this rank saves or restores of `targets`: the owned segments of the parameters that
// live in `flat` (its fp32 masters: no rank gathers the whole model), and, with
// `replicated`, the rest (quantizer buffers, the same on every rank) whole. Unsharded, a
// rank owns all of `flat`.
TensorSlices owned_slices(FlatParameters& flat, const NamedTensors& targets, bool replicated) {
  TensorSlices out;
  for (const auto& [name, tensor] : targets) {
    const auto piece = flat.owned_piece(name);
    if (!piece) {
      if (replicated) out.push_back({name, tensor.sizes().vec(), 0, tensor});
    } else if (piece->length > 0) {
      out.push_back({name, tensor.sizes().vec(), piece->param_begin, flat.values_at(piece->flat_begin, piece->length)});
    }
  }
  return out;
}

// ZeRO-3: the sharded student (and teacher), and the scopes that gather them for work
// outside the training step. At stages 0-2 both are null and every scope list is empty.
struct Shards {
  std::unique_ptr<FlatParameters> teacher_flat;
  std::unique_ptr<ShardedModel> student, teacher;

  using Scopes = std::vector<ShardedModel::Scope>;
  // For evaluations: the root units; decoder layers are gathered one by one as they run.
  Scopes roots() {
    Scopes out;
    if (student) out.push_back(student->gather_root());
    if (teacher) out.push_back(teacher->gather_root());
    return out;
  }
  // The whole student, for checkpoints, export and PTQ; with write_back the owned segments
  // take what was changed in place.
  Scopes whole_student(bool write_back) {
    Scopes out;
    if (student) out.push_back(student->gather_all(write_back));
    return out;
  }
  // Both models whole (nothing written back: pruning masks the fp32 masters itself): the
  // importance passes run a different number of batches on each rank, so no collective may
  // run inside them.
  Scopes whole_models() {
    Scopes out = whole_student(/*write_back=*/false);
    if (teacher) out.push_back(teacher->gather_all(/*write_back=*/false));
    return out;
  }
};

nlohmann::json step_record(const StepResult& r, double lr, double tokens_per_second, double mfu, int64_t memory,
                           int64_t skipped_total) {
  nlohmann::json j = {{"loss", r.total},        {"loss_ce", r.ce},   {"loss_kd", r.kd},
                      {"loss_hidden", r.hidden}, {"lr", lr},         {"grad_norm", r.grad_norm},
                      {"tokens_per_second", tokens_per_second},      {"peak_memory_bytes", memory},
                      {"skipped_steps", skipped_total},              {"buckets_overlapped", r.buckets_overlapped}};
  if (mfu > 0) j["mfu"] = mfu;
  if (r.skipped) j["skipped"] = true;
  return j;
}

}  // namespace

int run_training(const config::JobConfig& job, const std::string& resolved_config_yaml) {
  install_stop_handlers();
  const bool main_rank = dist::is_main();
  const auto kernels = check_kernel_switches();  // a bad QTRAIN_*_KERNEL value: exit 2 before any work
  if (main_rank) std::fprintf(stderr, "qtrain: %s\n", describe_kernel_switches(kernels).c_str());
  check_token_files_tokenizer(job);
  const auto device = resolve_device(job.model.device);
  const auto compute_dtype = resolve_dtype(job.model.dtype, device);

  // Models and the objective.
  auto teacher = load_teacher(job.model, device, compute_dtype);
  auto student = build_student(job.model, teacher, device, static_cast<uint64_t>(job.run.seed));
  const bool quantized = attach_quantization(job.quant, *student);
  auto pruning = StudentPruning::attach(job, student, compute_dtype);  // after quantization: checks its groups
  const auto student_width = student->config().hidden_size;
  distill::HiddenProjections projections(distill_options(job.distill), student_width,
                                         teacher ? teacher->config().hidden_size : student_width);
  init_projections(*projections, job.model.init_std, static_cast<uint64_t>(job.run.seed) + 1);
  projections->to(device, torch::kFloat32);
  distill::DistillLoss loss(distill_options(job.distill), student, teacher, projections, compute_dtype);

  // Parameters, communication, optimizer.
  const int stage = static_cast<int>(job.parallel.zero_stage);
  if (job.parallel.offload_optimizer && stage < 3)
    throw Error("parallel.offload_optimizer moves each rank's shard of the weights, gradients and moments to host memory")
        .key("parallel.offload_optimizer")
        .expected("false, or parallel.zero_stage 3");
  if (stage >= 3 && !device.is_cuda() && compute_dtype != torch::kFloat32)
    throw Error("ZeRO-3 on the CPU gathers in model.dtype, which MPI's collectives here take only as fp32")
        .key("model.dtype")
        .expected("fp32 (or auto) with parallel.zero_stage 3 on the CPU");
  auto trainable = named(*student);
  const auto extras = named(*projections, "distill.");
  trainable.insert(trainable.end(), extras.begin(), extras.end());
  auto collective = make_collective(device);
  // Every replica starts from rank 0's weights, as DDP does.
  if (stage >= 3)
    for (auto& [name, p] : trainable) collective->broadcast(p, 0);
  // ZeRO: the flat buffers' buckets split into one segment per rank; each rank's optimizer
  // owns its segments (and from stage 2 its gradients, at stage 3 its weights too).
  FlatOptions flat_options;
  flat_options.bucket_bytes = job.parallel.bucket_mb << 20;
  flat_options.shards = stage >= 1 ? dist::world_size() : 1;
  flat_options.rank = stage >= 1 ? dist::rank() : 0;
  flat_options.zero_stage = stage;
  flat_options.unit_of = sharding_unit;
  flat_options.offload = job.parallel.offload_optimizer;
  FlatParameters flat(trainable, flat_options);
  if (stage < 3) collective->broadcast(flat.values(), 0);
  Shards shards;
  if (stage >= 3) {
    shards.student = std::make_unique<ShardedModel>(*student, flat, *collective, compute_dtype,
                                                    job.training.activation_checkpointing);
    if (teacher && job.parallel.shard_teacher) {
      auto teacher_options = flat_options;
      teacher_options.with_grads = false;
      teacher_options.offload = false;  // its shard stays on the device: gathered twice a step
      shards.teacher_flat = std::make_unique<FlatParameters>(named(*teacher), teacher_options);
      shards.teacher = std::make_unique<ShardedModel>(*teacher, *shards.teacher_flat, *collective,
                                                      shards.teacher_flat->values().scalar_type(), false);
    }
  } else if (job.training.activation_checkpointing) {
    enable_activation_checkpointing(*student);
  }
  GradSync grad_sync(flat, *collective);
  AdamW optimizer(flat, {job.training.beta1, job.training.beta2, job.training.eps, job.training.weight_decay},
                  flat.shards() > 1 ? dist::rank() : 0);
  const LrSchedule schedule{job.training.lr, job.training.min_lr_ratio, job.training.warmup_steps,
                            job.training.steps, job.training.schedule};

  // Resume.
  RunResults results(job);
  results.kernels(kernels);
  CheckpointManager checkpoints(job.run.output_dir, job.checkpoint.keep_last);
  TrainingState state;
  if (const auto from = resume_point(job.checkpoint, checkpoints)) {
    // Each rank reads what its layout holds (ZeRO-3: its segments, straight into its master
    // shard), from whichever shards of the writer hold it.
    const auto ck = LoadedCheckpoint::open(*from, LoadedCheckpoint::Verify::on_read);
    const auto student_state = quant::split_state(*student);
    for (const auto& [section, targets] : {std::pair{"model", student_state.weights}, std::pair{"extras", extras},
                                           std::pair{"quant", student_state.quantizer}})
      ck.restore_slices(section, shards.student ? owned_slices(flat, targets, true) : whole(targets),
                        static_cast<int64_t>(targets.size()));
    refresh_quantization(*student);
    ck.restore("prune", pruning ? pruning->state() : model::NamedTensors{});
    if (pruning) pruning->restored(&flat);
    ck.restore_slices("optimizer", optimizer.state_slices(), optimizer.state_tensor_count());  // the owned part
    state = TrainingState::from_json(ck.trainer_state().at("state"));
    optimizer.set_steps(state.optimizer_steps);
    if (main_rank) std::fprintf(stderr, "qtrain: resumed from %s at step %lld\n", from->c_str(), (long long)state.step);
  } else {
    if (quantized) {
      const auto gathered = shards.whole_student(/*write_back=*/true);
      initialize_quantization(job, *student, compute_dtype);  // PTQ, then activation calibration
    }
    const auto gathered = shards.roots();
    results.at_start(teacher ? teacher.get() : nullptr, *student);  // teacher and PTQ perplexity for the report
  }
  auto save = [&] {
    if (!job.checkpoint.enabled) return;
    // Every rank writes what it owns: with ZeRO its segments of the fp32 masters and of the
    // moments; unsharded, rank 0 everything. Replicated tensors come from rank 0.
    const bool owner = flat.shards() > 1 || main_rank;
    const auto student_state = quant::split_state(*student);
    auto part = [&](const NamedTensors& tensors) { return owner ? owned_slices(flat, tensors, main_rank) : TensorSlices{}; };
    CheckpointContents contents{student->config(),
                                {{"state", state.to_json()}, {"world_size", dist::world_size()},
                                 {"zero_stage", job.parallel.zero_stage}, {"config_yaml", resolved_config_yaml}},
                                {{"model", part(student_state.weights)},
                                 {"optimizer", owner ? optimizer.state_slices() : TensorSlices{}},
                                 {"extras", part(extras)},
                                 {"quant", part(student_state.quantizer)},
                                 {"prune", main_rank && pruning ? whole(pruning->state()) : TensorSlices{}}}};
    checkpoints.save(state.step, contents);
  };

  // Data.
  data::LoaderOptions lo;
  lo.seq_len = job.data.seq_len;
  lo.micro_batch_size = job.data.micro_batch_size;
  lo.global_batch_size = job.data.global_batch_size;
  lo.seed = static_cast<uint64_t>(job.run.seed);
  lo.rank = dist::rank();
  lo.world_size = dist::world_size();
  lo.vocab_size = student->config().vocab_size;
  lo.pin_memory = device.is_cuda();
  data::TrainLoader loader(job.data.train, lo, state.sampler);

  // Reporting.
  std::unique_ptr<MetricsLogger> metrics;
  if (main_rank) metrics = std::make_unique<MetricsLogger>(job.run.output_dir, job.logging.jsonl, job.logging.tensorboard);
  ProgressBar progress("train", job.training.steps, "steps", stderr, job.logging.progress);
  progress.set_start(state.step);
  Watchdog watchdog(static_cast<double>(job.parallel.timeout_s), "start-up");
  const double flops_per_token = model::distill_flops_per_token(
      student->config(), teacher ? &teacher->config() : nullptr, job.data.seq_len);
  const double peak = peak_bf16_tflops(device) * 1e12 * dist::world_size();
  const auto faults = FaultInjection::from_environment();
  StepProfiler profiler(job.logging.profile_step, job.logging.profile_steps, job.run.output_dir, device, main_rank);
  auto prune_if_due = [&](int64_t step) {
    if (!pruning || !pruning->due(step)) return;
    const auto gathered = shards.whole_models();
    const auto summary = pruning->update(step, loss, flat, optimizer);
    if (metrics) metrics->log(step, {{"kept_mlp_channels", pruning->kept_channels()},
                                     {"kept_kv_groups", pruning->kept_kv_groups()}}, "prune");
    if (main_rank) std::fprintf(stderr, "qtrain: %s\n", summary.c_str());
  };
  StepContext ctx{loss, flat, grad_sync, optimizer, device, job.training.grad_clip, false, pruning.get(),
                  shards.student.get(), shards.teacher.get()};
  if (state.step == 0) prune_if_due(0);  // one-shot before training (Minitron: prune, then distill)
  auto window_start = std::chrono::steady_clock::now();
  int64_t window_tokens = 0, run_tokens = 0;

  while (state.step < job.training.steps) {
    watchdog.beat("step " + std::to_string(state.step + 1));
    const auto batch = loader.next();
    const double lr = schedule.at(state.step);
    faults.at_step(dist::rank(), state.step + 1);
    ctx.inject_nan = faults.nan_steps.count(state.step + 1) > 0;
    StepResult r;
    profiler.before_step(state.step + 1);
    try {
      r = train_step(ctx, batch, lr);
    } catch (const c10::OutOfMemoryError& e) {
      throw Error("out of memory in a training step of " + std::to_string(batch.micro_batches.size()) +
                  " micro-batches of micro_batch_size " + std::to_string(job.data.micro_batch_size) + " x seq_len " +
                  std::to_string(job.data.seq_len) + " tokens on " + device.str())
          .key("data.micro_batch_size")
          .expected("a smaller micro_batch_size or seq_len (global_batch_size stays: more accumulation)");
    }
    ++state.step;
    profiler.after_step(state.step);
    state.sampler = batch.next;
    state.tokens_seen += r.tokens;
    window_tokens += r.tokens;
    run_tokens += r.tokens;
    if (r.skipped) {
      ++state.skipped_steps;
      if (main_rank) std::fprintf(stderr, "qtrain: step %lld skipped: loss %g, grad norm %g (non-finite)\n",
                                  (long long)state.step, r.total, r.grad_norm);
      if (state.skipped_steps > job.training.max_skipped_steps)
        throw Error(std::to_string(state.skipped_steps) + " steps had a non-finite loss or gradient")
            .key("training.max_skipped_steps")
            .expected("at most " + std::to_string(job.training.max_skipped_steps) + "; lower training.lr or check the data");
    } else {
      state.optimizer_steps = optimizer.steps();
    }
    prune_if_due(state.step);
    const bool last = state.step == job.training.steps;
    if (state.step % job.logging.every_steps == 0 || last || r.skipped) {
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - window_start).count();
      const double tps = seconds > 0 ? static_cast<double>(window_tokens) / seconds : 0.0;
      if (metrics)
        metrics->log(state.step, step_record(r, lr, tps, peak > 0 ? tps * flops_per_token / peak : 0.0,
                                             peak_memory_bytes(device), state.skipped_steps));
      window_start = std::chrono::steady_clock::now();
      window_tokens = 0;
    }
    char extra[96];
    std::snprintf(extra, sizeof(extra), "loss %.4f lr %.2e", r.total, lr);
    progress.update(state.step, static_cast<double>(run_tokens), "tok", extra);
    if (job.eval.every_steps > 0 && state.step % job.eval.every_steps == 0 && !job.data.validation.empty()) {
      watchdog.beat("evaluation at step " + std::to_string(state.step));
      const auto gathered = shards.roots();
      const double ppl = evaluate(*student, job);
      if (metrics) metrics->log(state.step, {{"perplexity", ppl}}, "eval");
    }
    const int any_signal = dist::allreduce_max(stop_signal());
    const bool due = job.checkpoint.every_steps > 0 && state.step % job.checkpoint.every_steps == 0;
    if (due || last || any_signal) {
      watchdog.beat("checkpoint at step " + std::to_string(state.step));
      save();
    }
    if (any_signal) {
      progress.finish();
      if (main_rank) std::fprintf(stderr, "qtrain: stopped by signal %d after step %lld; %s\n", any_signal,
                                  (long long)state.step,
                                  job.checkpoint.enabled ? "checkpoint saved" : "no checkpoint (checkpoint.enabled false)");
      return 128 + any_signal;
    }
  }
  progress.finish();
  double final_ppl = 0.0;
  if (!job.data.validation.empty()) {
    watchdog.beat("final evaluation");
    const auto gathered = shards.roots();
    const double ppl = results.measure("student", *student, state.step);
    if (metrics) metrics->log(state.step, {{"perplexity", ppl}}, "eval");
    if (main_rank) std::printf("qtrain: step %lld: student perplexity %.4f on %s\n", (long long)state.step, ppl,
                               job.data.validation.c_str());
    final_ppl = ppl;
  }
  if (pruning && job.prune.export_at_end) {
    const auto gathered = shards.whole_student(/*write_back=*/false);
    export_pruned_and_compare(job, *student, *pruning, final_ppl, metrics.get(), state.step, results);
  } else if (quantized && job.quant.export_at_end) {
    export_and_compare(job, *student, shards.student.get(), final_ppl, metrics.get(), state.step, results);
  }
  metrics.reset();  // flushed and closed before the report reads metrics.jsonl
  if (main_rank) write_report(job.run.output_dir);
  return 0;
}

}  // namespace qtrain::trainer
