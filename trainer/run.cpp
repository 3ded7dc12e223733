// run_training, the algorithm top to bottom: build the session, resume or initialise, then
// for each step train, log, evaluate and checkpoint at their cadences; at the end evaluate,
// export and measure the export, and write the report.
#include "trainer/run.h"

#include <chrono>
#include <filesystem>

#include "common/device.h"
#include "common/dist.h"
#include "common/error.h"
#include "common/kernels.h"
#include "common/memory.h"
#include "common/output_folder.h"
#include "common/progress.h"
#include "data/token_file.h"
#include "data/tokenizer_match.h"
#include "eval/report.h"
#include "model/flops.h"
#include "model/hf_checkpoint.h"
#include "quant/export.h"
#include "quant/load_compressed.h"
#include "quant/model_state.h"
#include "quant/quant_error.h"
#include "trainer/checkpoint.h"
#include "trainer/estimate.h"
#include "trainer/fault_injection.h"
#include "trainer/metrics_logger.h"
#include "trainer/quantization.h"
#include "trainer/results.h"
#include "trainer/session.h"
#include "trainer/step_profiler.h"
#include "trainer/stop_signal.h"
#include "trainer/train_step.h"
#include "trainer/training_state.h"
#include "trainer/watchdog.h"

namespace qtrain::trainer {

namespace {

namespace fs = std::filesystem;
using NamedTensors = model::NamedTensors;

std::string tokenizer_source(const config::JobConfig& job) {
  if (!job.data.tokenizer.empty())
    return std::filesystem::is_directory(job.data.tokenizer) ? job.data.tokenizer
                                                              : std::filesystem::path(job.data.tokenizer).parent_path().string();
  return job.model.teacher.value_or("");
}


// Where a run starts: a checkpoint to resume from, or nothing.
std::optional<std::string> resume_point(const config::CheckpointSection& c, const CheckpointManager& manager) {
  if (c.resume == "none") {
    if (manager.any())
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
  if (path.empty() && job.model.teacher) {
    const auto folder = std::filesystem::path(*job.model.teacher);
    if (std::filesystem::exists(folder / "tokenizer.json") || std::filesystem::exists(folder / "tokenizer.model"))
      path = folder.string();
  }
  if (path.empty()) return;
  const auto tokenizer = data::load_tokenizer(path);
  for (const auto& file : {job.data.train, job.data.validation})
    if (!file.empty()) data::check_tokenizer_fingerprint(data::TokenFile::open(file), *tokenizer);
}

// What fixes the sample order (data/sample_order.h) and the position a checkpoint holds in
// it: a resumed run that changed any of them would silently read other samples than the
// interrupted run would have (the position counts samples of seq_len + 1 tokens in global
// batches of a seed's permutation). micro_batch_size and the rank count may change.
nlohmann::json sample_order(const config::JobConfig& job) {
  return {{"data.seq_len", job.data.seq_len}, {"data.global_batch_size", job.data.global_batch_size},
          {"run.seed", job.run.seed}};
}

void check_sample_order(const nlohmann::json& trainer_state, const config::JobConfig& job, const std::string& from) {
  if (!trainer_state.contains("sample_order")) return;  // written before the check existed
  const auto& saved = trainer_state.at("sample_order");
  const auto current = sample_order(job);  // items() refers into it: not a temporary
  // checkpoint.resume naming a folder is a deliberate continuation (a curriculum that grows
  // seq_len): said, not refused. `auto` continues the same run, which must read on exactly.
  const bool deliberate = job.checkpoint.resume != "auto";
  for (const auto& [key, now] : current.items())
    if (saved.contains(key) && saved.at(key) != now && deliberate && dist::is_main())
      std::fprintf(stderr, "qtrain: warning: %s was made with %s = %s, this run has %s: the sample order changes\n",
                   from.c_str(), key.c_str(), saved.at(key).dump().c_str(), now.dump().c_str());
    else if (saved.contains(key) && saved.at(key) != now && !deliberate)
      throw Error("the run resumed from " + from + " was made with " + key + " = " + saved.at(key).dump() +
                  ", this one has " + now.dump() + "; the samples it reads would not continue the interrupted run")
          .key(key)
          .expected(saved.at(key).dump() + " (or checkpoint.resume naming the folder, to continue with the change)");
}

// Restores the checkpoint that checkpoint.resume names (each rank what its layout holds, from
// whichever shards of the writer hold it; ZeRO-3 straight into its master shard), or, for a
// fresh run, initialises the quantization (PTQ, then activation calibration) and measures
// the teacher and the starting student for the report.
TrainingState resume_or_initialise(Session& s, const CheckpointManager& checkpoints, RunResults& results,
                                   Watchdog& watchdog) {
  TrainingState state;
  watchdog.beat("start-up: choosing the checkpoint to resume from");
  const auto from = resume_point(s.job.checkpoint, checkpoints);
  if (!from) {
    if (s.quantized) {
      watchdog.beat("start-up: PTQ (" + std::string(config::name_of(s.job.quant.ptq.method)) + ")");
      initialize_quantization(s.job.quant, calibration_data(s.job.data), *s.student, s.compute_dtype,
                              s.shards.student.get(), [&watchdog](int layer) {
                                watchdog.beat("start-up: PTQ of layer " + std::to_string(layer));
                              });
    }
    watchdog.beat("start-up: the first evaluation (teacher and student)");
    const auto gathered = s.shards.roots();
    results.at_start(s.teacher ? s.teacher.get() : nullptr, *s.student);
    return state;
  }
  watchdog.beat("start-up: resuming from " + *from);
  const auto ck = LoadedCheckpoint::open(*from, LoadedCheckpoint::Verify::on_read);
  check_sample_order(ck.trainer_state(), s.job, *from);
  const auto student_state = quant::split_state(*s.student);
  for (const auto& [section, targets] : {std::pair{"model", student_state.weights}, std::pair{"extras", s.extras},
                                         std::pair{"quant", student_state.quantizer}})
    ck.restore_slices(section, s.shards.student ? owned_slices(*s.flat, targets, true) : whole(targets),
                      static_cast<int64_t>(targets.size()));
  refresh_quantization(*s.student);
  ck.restore("prune", s.pruning ? s.pruning->state() : model::NamedTensors{});
  if (s.pruning) s.pruning->restored(s.flat.get());
  ck.restore_slices("optimizer", s.optimizer->state_slices(), s.optimizer->state_tensor_count());  // the owned part
  state = TrainingState::from_json(ck.trainer_state().at("state"));
  s.optimizer->set_steps(state.optimizer_steps);
  if (dist::is_main()) std::fprintf(stderr, "qtrain: resumed from %s at step %lld\n", from->c_str(), (long long)state.step);
  return state;
}

// Checkpoints at their cadence: every checkpoint.every_steps, after the last step, and when
// a stop signal was agreed on; every rank writes what it owns (trainer/checkpoint.h).
class Checkpointer {
 public:
  Checkpointer(Session& s, std::string config_yaml)
      : s_(s), config_yaml_(std::move(config_yaml)), manager_(s.job.run.output_dir, s.job.checkpoint.keep_last) {}
  const CheckpointManager& manager() const { return manager_; }

  bool due(int64_t step, bool signal) const {
    const auto& c = s_.job.checkpoint;
    return (c.every_steps > 0 && step % c.every_steps == 0) || step == s_.job.training.steps || signal;
  }

  void save(const TrainingState& state) {
    if (!s_.job.checkpoint.enabled) return;
    // With ZeRO each rank its segments of the fp32 masters and of the moments; unsharded,
    // rank 0 everything. Replicated tensors come from rank 0.
    const bool main = dist::is_main();
    const bool owner = s_.flat->shards() > 1 || main;
    const auto student_state = quant::split_state(*s_.student);
    auto part = [&](const NamedTensors& tensors) { return owner ? owned_slices(*s_.flat, tensors, main) : TensorSlices{}; };
    CheckpointContents contents{s_.student->config(),
                                {{"state", state.to_json()}, {"world_size", dist::world_size()},
                                 {"zero_stage", s_.job.parallel.zero_stage}, {"config_yaml", config_yaml_},
                                 {"sample_order", sample_order(s_.job)}},
                                {{"model", part(student_state.weights)},
                                 {"optimizer", owner ? s_.optimizer->state_slices() : TensorSlices{}},
                                 {"extras", part(s_.extras)},
                                 {"quant", part(student_state.quantizer)},
                                 {"prune", main && s_.pruning ? whole(s_.pruning->state()) : TensorSlices{}}}};
    manager_.save(state.step, contents);
  }

 private:
  Session& s_;
  std::string config_yaml_;
  CheckpointManager manager_;
};

// Perplexity on data.validation (results.h: the eval section's windows) every
// eval.every_steps, logged as "eval"; and once after the last step, recorded for the report.
class Evaluator {
 public:
  Evaluator(Session& s, MetricsLogger* metrics) : s_(s), metrics_(metrics) {}
  bool enabled() const { return !s_.job.data.validation.empty(); }
  bool due(int64_t step) const { return enabled() && s_.job.eval.every_steps > 0 && step % s_.job.eval.every_steps == 0; }

  void run(int64_t step) {
    const auto gathered = s_.shards.roots();
    const double ppl = evaluate_validation(*s_.student, s_.job).perplexity;
    if (metrics_) metrics_->log(step, {{"perplexity", ppl}}, "eval");
  }

  double final(int64_t step, RunResults& results) {
    const auto gathered = s_.shards.roots();
    const double ppl = results.measure("student", *s_.student, step);
    if (metrics_) metrics_->log(step, {{"perplexity", ppl}}, "eval");
    if (dist::is_main())
      std::printf("qtrain: step %lld: student perplexity %.4f on %s\n", (long long)step, ppl,
                  s_.job.data.validation.c_str());
    return ppl;
  }

 private:
  Session& s_;
  MetricsLogger* metrics_;
};

// The export after the last step, and its perplexity next to the trained student's
// (`student_ppl`, 0 without data.validation), which it should equal: the pruned checkpoint
// without its pruned structure (quantized too with fake quantization; docs/pruning.md), else
// the compressed-tensors checkpoint (docs/quantization.md). Both stream layer by layer; under
// ZeRO-3 every rank gathers each layer and rank 0 writes. Nothing when the run exports nothing.
void export_and_measure(Session& s, double student_ppl, MetricsLogger* metrics, int64_t step, RunResults& results) {
  const auto& job = s.job;
  const bool pruned = s.pruning && job.prune.export_at_end;
  if (!pruned && !(s.quantized && job.quant.export_at_end)) return;
  const auto dir = (fs::path(job.run.output_dir) / "export").string();
  const bool main = dist::is_main();
  bool integer = s.quantized;
  quant::ExportOptions options;
  options.dtype = stored_dtype(job.quant.export_dtype);
  options.tokenizer_source = tokenizer_source(job);
  options.max_shard_bytes = model::mib_to_bytes(job.run.export_shard_mb);
  options.write = main;
  if (auto* sharded = s.shards.student.get())
    options.gather = [sharded](int unit, bool gathered) { gathered ? sharded->acquire(unit) : sharded->release(unit); };
  if (pruned) {
    PrunedExport summary;
    write_folder_whole(dir, main, [&](const std::string& staging) {
      summary = export_pruned(*s.student, s.pruning->masks(), staging, options);
    });
    integer = summary.quantized;
    if (main) {
      results.exported(dir, summary.errors);
      std::printf("qtrain: exported the pruned student%s (%s) to %s\n", summary.quantized ? ", quantized," : "",
                  describe(summary).c_str(), dir.c_str());
    }
  } else if (s.shards.student || main) {
    quant::ExportSummary summary;
    write_folder_whole(dir, main, [&](const std::string& staging) {
      summary = quant::export_compressed_tensors(*s.student, staging, options);
    });
    if (main) {
      results.exported(dir, summary.errors);
      std::printf("qtrain: exported %lld quantized linears (%.3f bits per weight, %.1f MB in all) to %s\n",
                  (long long)summary.quantized_linears, summary.bits_per_quantized_weight(),
                  static_cast<double>(summary.total_bytes) / 1e6, dir.c_str());
    }
  }
  dist::barrier();
  if (job.data.validation.empty()) return;
  const model::LoadOptions load{s.device, s.compute_dtype};
  auto exported = integer ? quant::load_for_eval(dir, load) : model::load_causal_lm(dir, load);
  const double ppl = results.measure("export", *exported, step);
  if (metrics) metrics->log(step, {{"perplexity", ppl}}, "export");
  if (main)
    std::printf("qtrain: perplexity on %s: %s student %.4f, exported %s checkpoint %.4f (%+.3f%%)\n",
                job.data.validation.c_str(), pruned ? "masked" : "fake-quant", student_ppl,
                pruned ? "pruned" : "integer", ppl, 100.0 * (ppl - student_ppl) / student_ppl);
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

nlohmann::json step_record(const StepResult& r, double lr, double tokens_per_second, double mfu, int64_t memory,
                           int64_t skipped_total) {
  nlohmann::json j = {{"loss", r.total},        {"loss_ce", r.ce},   {"loss_kd", r.kd},
                      {"loss_hidden", r.hidden}, {"lr", lr},         {"grad_norm", r.grad_norm},
                      {"tokens_per_second", tokens_per_second},      {"peak_memory_bytes", memory},
                      {"skipped_steps", skipped_total},              {"buckets_overlapped", r.buckets_overlapped}};
  if (mfu > 0) j["mfu"] = mfu;
  if (r.router > 0) j["loss_router"] = r.router;
  if (r.skipped) j["skipped"] = true;
  return j;
}

// One step of train_step, an out-of-memory error turned into advice on the batch shape.
StepResult run_step(StepContext& ctx, const data::StepBatch& batch, double lr, const config::JobConfig& job) {
  auto out_of_memory = [&](bool host) {
    return Error("out of memory in a training step of " + std::to_string(batch.micro_batches.size()) +
                " micro-batches of micro_batch_size " + std::to_string(job.data.micro_batch_size) + " x seq_len " +
                std::to_string(job.data.seq_len) + " tokens on " + (host ? std::string("the host") : ctx.device.str()))
        .key("data.micro_batch_size")
        .expected("a smaller micro_batch_size or seq_len (global_batch_size stays: more accumulation)");
  };
  try {
    return train_step(ctx, batch, lr);
  } catch (const c10::OutOfMemoryError&) {
    throw out_of_memory(!ctx.device.is_cuda());
  } catch (const std::bad_alloc&) {
    throw out_of_memory(true);
  } catch (const c10::Error& e) {
    // LibTorch 1.13's CPU allocator reports a failed allocation as a plain c10::Error.
    if (std::string(e.what_without_backtrace()).find("can't allocate memory") != std::string::npos)
      throw out_of_memory(true);
    throw;
  }
}

int64_t largest_over_ranks(int64_t bytes) {
  double value[1] = {static_cast<double>(bytes)};
  dist::allreduce_max(value, 1);
  return static_cast<int64_t>(value[0]);
}

data::LoaderOptions loader_options(const Session& s) {
  data::LoaderOptions o;
  o.seq_len = s.job.data.seq_len;
  o.micro_batch_size = s.job.data.micro_batch_size;
  o.global_batch_size = s.job.data.global_batch_size;
  o.seed = static_cast<uint64_t>(s.job.run.seed);
  o.rank = dist::rank();
  o.world_size = dist::world_size();
  o.vocab_size = s.student->config().vocab_size;
  o.pin_memory = s.device.is_cuda();
  return o;
}

}  // namespace

int run_training(const config::JobConfig& job, const std::string& resolved_config_yaml) {
  install_stop_handlers();
  const bool main_rank = dist::is_main();
  // From before the first collective to the end: a rank that stops anywhere (loading, PTQ,
  // resume, an evaluation, a step) ends the job within parallel.timeout_s of its last
  // beat, instead of leaving the others waiting in a collective for ever.
  Watchdog watchdog(static_cast<double>(job.parallel.timeout_s), "start-up: checking the inputs");
  const auto faults = FaultInjection::from_environment();
  check_kernel_switches(true);  // a bad QTRAIN_*_KERNEL value: exit 2 before any work
  prepare_output_folder(job.run.output_dir, "run.output_dir");
  check_token_files_tokenizer(job);
  faults.at_start(dist::rank());
  watchdog.beat("start-up: loading the models");
  const auto device = resolve_device(config::name_of(job.model.device));
  const int64_t baseline = largest_over_ranks(baseline_memory_bytes(device));
  Session s(job);
  const auto kernels = check_kernel_switches(s.device.is_cuda());
  if (main_rank) std::fprintf(stderr, "qtrain: %s\n", describe_kernel_switches(kernels).c_str());
  RunResults results(job);
  Checkpointer checkpointer(s, resolved_config_yaml);
  TrainingState state = resume_or_initialise(s, checkpointer.manager(), results, watchdog);
  results.kernels(kernels);  // after the resume checks: a refused start leaves results.json alone
  watchdog.beat("start-up: the data loader");
  data::TrainLoader loader(job.data.train, loader_options(s), state.sampler);

  // Reporting.
  std::unique_ptr<MetricsLogger> metrics;
  if (main_rank) metrics = std::make_unique<MetricsLogger>(job.run.output_dir, job.logging.jsonl, job.logging.tensorboard);
  Evaluator evaluator(s, metrics.get());
  ProgressBar progress("train", job.training.steps, "steps", stderr, config::name_of(job.logging.progress));
  progress.set_start(state.step);
  const double flops_per_token = model::distill_flops_per_token(
      s.student->config(), s.teacher ? &s.teacher->config() : nullptr, job.data.seq_len);
  const double peak = peak_bf16_tflops(s.device) * 1e12 * dist::world_size();
  StepProfiler profiler(job.logging.profile_step, job.logging.profile_steps, job.run.output_dir, s.device, main_rank);
  auto prune_if_due = [&](int64_t step) {
    if (!s.pruning || !s.pruning->due(step)) return;
    const auto gathered = s.shards.whole_models();
    const auto summary = s.pruning->update(step, *s.loss, *s.flat, *s.optimizer);
    if (metrics) {
      const auto& masks = s.pruning->masks();
      metrics->log(step, {{"kept_mlp_channels", s.pruning->kept_channels()},
                          {"kept_kv_groups", s.pruning->kept_kv_groups()},
                          {"kept_experts", masks.kept_experts()},
                          {"kept_layers", masks.kept_layers()},
                          {"kept_hidden", masks.kept_hidden()}}, "prune");
    }
    if (main_rank) std::fprintf(stderr, "qtrain: %s\n", summary.c_str());
  };
  StepContext ctx{*s.loss, *s.flat, *s.grad_sync, *s.optimizer, s.device, job.training.grad_clip, false,
                  s.pruning.get(), s.shards.student.get(), s.shards.teacher.get()};
  if (state.step == 0) prune_if_due(0);  // one-shot before training (Minitron: prune, then distill)
  const int64_t first_step = state.step, first_optimizer_steps = state.optimizer_steps;
  auto window_start = std::chrono::steady_clock::now();
  int64_t window_tokens = 0, run_tokens = 0;

  while (state.step < job.training.steps) {
    // Train.
    watchdog.beat("step " + std::to_string(state.step + 1));
    const auto batch = loader.next();
    const double lr = s.schedule.at(state.step);
    faults.at_step(dist::rank(), state.step + 1);
    ctx.inject_nan = faults.nan_steps.count(state.step + 1) > 0;
    profiler.before_step(state.step + 1);
    const StepResult r = run_step(ctx, batch, lr, job);
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
      state.optimizer_steps = s.optimizer->steps();
    }
    prune_if_due(state.step);

    // Log.
    if (state.step % job.logging.every_steps == 0 || state.step == job.training.steps || r.skipped) {
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - window_start).count();
      const double tps = seconds > 0 ? static_cast<double>(window_tokens) / seconds : 0.0;
      const int64_t memory = largest_over_ranks(peak_memory_bytes(s.device));  // every rank logs at this step
      if (metrics)
        metrics->log(state.step, step_record(r, lr, tps, peak > 0 ? tps * flops_per_token / peak : 0.0, memory,
                                             state.skipped_steps));
      window_start = std::chrono::steady_clock::now();
      window_tokens = 0;
    }
    char extra[96];
    std::snprintf(extra, sizeof(extra), "loss %.4f lr %.2e", r.total, lr);
    progress.update(state.step, static_cast<double>(run_tokens), "tok", extra);

    // Evaluate, checkpoint, stop.
    if (evaluator.due(state.step)) {
      watchdog.beat("evaluation at step " + std::to_string(state.step));
      evaluator.run(state.step);
    }
    const int any_signal = dist::allreduce_max(stop_signal());
    if (checkpointer.due(state.step, any_signal != 0)) {
      watchdog.beat("checkpoint at step " + std::to_string(state.step));
      checkpointer.save(state);
    }
    if (any_signal) {
      progress.finish();
      if (main_rank) std::fprintf(stderr, "qtrain: stopped by signal %d after step %lld; %s\n", any_signal,
                                  (long long)state.step,
                                  job.checkpoint.enabled ? "checkpoint saved" : "no checkpoint (checkpoint.enabled false)");
      return 128 + any_signal;
    }
  }

  // Finish: the memory the steps took, the final evaluation, the export and its measurement, the report.
  progress.finish();
  if (state.step > first_step && state.optimizer_steps == first_optimizer_steps)
    throw Error("every one of the " + std::to_string(state.step - first_step) +
                " steps of this run had a non-finite loss or gradient: the student was never updated")
        .key("training.max_skipped_steps")
        .expected("finite losses; lower training.lr or check the data and the teacher");
  results.memory(largest_over_ranks(peak_memory_bytes(s.device)), baseline,
                 estimate_job(job, dist::world_size(), s.device.is_cuda()).total_bytes);
  double final_ppl = 0.0;
  if (evaluator.enabled()) {
    watchdog.beat("final evaluation");
    final_ppl = evaluator.final(state.step, results);
  }
  watchdog.beat("export");
  export_and_measure(s, final_ppl, metrics.get(), state.step, results);
  metrics.reset();  // flushed and closed before the report reads metrics.jsonl
  if (main_rank) write_report(job.run.output_dir);
  return 0;
}

}  // namespace qtrain::trainer
