// qtrain quantize / qtrain export.
#include "trainer/jobs.h"

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/compat.h"
#include "common/device.h"
#include "common/dist.h"
#include "common/error.h"
#include "common/output_folder.h"
#include "config/load.h"
#include "data/token_file.h"
#include "eval/perplexity.h"
#include "model/hf_checkpoint.h"
#include "quant/export.h"
#include "quant/kv_cache_quant.h"
#include "quant/load_compressed.h"
#include "quant/model_state.h"
#include "quant/ptq.h"
#include "quant/quantized_model.h"
#include "trainer/checkpoint.h"
#include "trainer/pruning.h"
#include "trainer/quantization.h"

namespace qtrain::trainer {

namespace fs = std::filesystem;

int run_quantize(const QuantizeJob& job) {
  prepare_export_folder(job.output, "--output", {job.model, job.calibration, job.eval_data});
  const auto device = resolve_device(job.device);
  const auto dtype = resolve_dtype(job.dtype, device);
  auto model = model::load_causal_lm(job.model, {device, torch::kFloat32});
  for (auto& p : model->parameters()) p.set_requires_grad(false);
  const auto rules = job.rules.empty() ? std::vector<std::string>{"lm_head=none", "re:.*=" + job.scheme} : job.rules;
  quant::FakeQuantOptions fq;
  fq.observer.kind = job.observer;
  quant::attach_fake_quant(*model, quant::assign_schemes(*model, quant::parse_rules(rules, "--scheme")), fq);
  quant::attach_kv_cache_quant(*model, job.kv_cache);
  const auto sequences =
      calibration_sequences(job.calibration, job.seq_len, job.calibration_sequences, model->config().vocab_size)
          .to(device);
  auto run_batches = [&] {
    compat::AutocastGuard autocast(device, dtype);
    for (int64_t i = 0; i < sequences.size(0); i += job.batch_size)
      model->forward(sequences.narrow(0, i, std::min(job.batch_size, sequences.size(0) - i)));
  };
  quant::run_ptq(*model, job.ptq, run_batches);
  quant::calibrate_activations(*model, run_batches);
  if (dist::is_main()) {
    quant::ExportOptions options;
    options.tokenizer_source = job.model;
    options.max_shard_bytes = model::mib_to_bytes(job.max_shard_mb);
    quant::ExportSummary s;
    write_folder_whole(job.output, true, [&](const std::string& staging) {
      s = quant::export_compressed_tensors(*model, staging, options);
    });
    std::printf("qtrain quantize: %s with %s (%s): %lld linears, %.3f bits per quantized weight, %.1f MB -> %s\n",
                job.model.c_str(), job.rules.empty() ? job.scheme.c_str() : "rules", config::name_of(job.ptq.method),
                (long long)s.quantized_linears, s.bits_per_quantized_weight(), static_cast<double>(s.total_bytes) / 1e6,
                job.output.c_str());
  }
  dist::barrier();
  if (!job.eval_data.empty()) {
    auto exported = quant::load_for_eval(job.output, {device, dtype});
    auto tokens = data::TokenFile::open(job.eval_data);
    eval::PerplexityOptions o;
    o.seq_len = job.eval_seq_len;
    o.show_progress = false;
    const auto r = eval::evaluate_perplexity(*exported, tokens, o);
    if (dist::is_main()) std::printf("qtrain quantize: perplexity %.4f on %s\n", r.perplexity, job.eval_data.c_str());
  }
  return 0;
}

int run_export(const ExportJob& job) {
  check_output_folder(job.output, "--output", {job.checkpoint, job.tokenizer});
  const auto ck = LoadedCheckpoint::open(job.checkpoint);
  const auto& state = ck.trainer_state();
  if (!state.contains("config_yaml")) throw Error("checkpoint has no job config").file(job.checkpoint).key("config_yaml");
  const auto loaded = config::load_config_text(state["config_yaml"].get<std::string>(),
                                               (fs::path(job.checkpoint) / "trainer_state.json").string());
  // The run's own inputs too: the tokenizer comes from its teacher when --tokenizer is not
  // given, and an --output naming the teacher's folder would replace it.
  const auto& run = loaded.job;
  prepare_export_folder(job.output, "--output",
                        {job.checkpoint, job.tokenizer, run.model.teacher.value_or(""), run.data.tokenizer,
                         run.data.train, run.data.validation,
                         run.model.student == "copy" || run.model.student == "config" ? "" : run.model.student});
  model::CausalLM student(model::ModelConfig::from_file((fs::path(job.checkpoint) / "config.json").string()));
  const bool quantized = attach_quantization(loaded.job.quant, *student);
  // A pruned run exports without its pruned structure (docs/pruning.md), quantized or not.
  auto pruning = StudentPruning::attach(loaded.job.prune, loaded.job.quant, calibration_data(loaded.job.data), student,
                                        torch::kFloat32);
  const auto student_state = quant::split_state(*student);
  ck.restore("model", student_state.weights);
  std::string tokenizer = job.tokenizer;
  if (tokenizer.empty()) tokenizer = loaded.job.model.teacher.value_or("");
  if (!quantized && !pruning) {  // plain distillation: the student as a Hugging Face folder
    model::SaveOptions options;
    options.dtype = torch::kBFloat16;
    options.max_shard_bytes = model::mib_to_bytes(job.max_shard_mb);
    write_folder_whole(job.output, true, [&](const std::string& staging) {
      model::save_causal_lm(*student, staging, options);
      quant::copy_tokenizer_files(tokenizer, staging);
    });
    std::printf("qtrain export: %s -> %s (bf16 Hugging Face folder)\n", job.checkpoint.c_str(), job.output.c_str());
    return 0;
  }
  if (quantized) {
    ck.restore("quant", student_state.quantizer);
    refresh_quantization(*student);
  }
  // As the run's own export would write it (its config, from the checkpoint).
  quant::ExportOptions options;
  options.dtype = stored_dtype(loaded.job.quant.export_dtype);
  options.tokenizer_source = tokenizer;
  options.max_shard_bytes = model::mib_to_bytes(job.max_shard_mb);
  if (pruning) {
    ck.restore("prune", pruning->state());
    pruning->restored();
    PrunedExport e;
    write_folder_whole(job.output, true, [&](const std::string& staging) {
      e = export_pruned(*student, pruning->masks(), staging, options);
    });
    std::printf("qtrain export: %s -> %s (pruned%s: %s)\n", job.checkpoint.c_str(), job.output.c_str(),
                e.quantized ? ", quantized" : "", describe(e).c_str());
    return 0;
  }
  quant::ExportSummary s;
  write_folder_whole(job.output, true, [&](const std::string& staging) {
    s = quant::export_compressed_tensors(*student, staging, options);
  });
  std::printf("qtrain export: %s -> %s (%lld quantized linears, %.3f bits per quantized weight)\n", job.checkpoint.c_str(),
              job.output.c_str(), (long long)s.quantized_linears, s.bits_per_quantized_weight());
  return 0;
}

}  // namespace qtrain::trainer
