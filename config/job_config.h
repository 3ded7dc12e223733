// The typed config tree of a qtrain job (cf. torchtitan's job_config.py): one struct per
// section, each listing its fields once in visit(). A component receives only its section.
// To add a field: declare it with its default and add one v.field(...) line to visit().
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "config/choices.h"
#include "config/rules.h"

namespace qtrain::config {

// Names end in "Section" so they do not collide with model::ModelConfig (the HF config.json).
struct RunSection {
  std::string name = "demo";
  std::string output_dir = "runs/demo";
  std::int64_t seed = 1234;
  double export_shard_mb = 5120;

  template <class V>
  void visit(V& v) {
    v.field("name", name, "Name of the run, used in logs and metrics");
    v.field("output_dir", output_dir, "Directory for checkpoints, logs and exported models (created if missing)");
    v.field("seed", seed, "Seed for weight init, data order and dropout; the same seed gives the same run", at_least(0));
    v.field("export_shard_mb", export_shard_mb, "Largest weight file of an export, in MiB; a larger model is written as model-0000K-of-0000N.safetensors shards with model.safetensors.index.json, as transformers' save_pretrained does", greater_than(0));
  }
};

struct ModelSection {
  std::optional<std::string> teacher;  // none: no teacher
  std::string student = "copy";
  std::string student_config;
  std::vector<std::string> student_overrides;
  StudentInit student_init = StudentInit::teacher;
  double init_std = 0.02;
  ComputeDtype dtype = ComputeDtype::automatic;
  DeviceChoice device = DeviceChoice::automatic;

  StudentSource student_source() const {
    return student == "copy" ? StudentSource::copy : student == "config" ? StudentSource::config : StudentSource::checkpoint;
  }

  template <class V>
  void visit(V& v) {
    v.field("teacher", teacher, "Hugging Face checkpoint folder of the frozen teacher; none trains without one (distill.beta and distill.gamma must be 0)", Required{}, NoneIsNull{});
    v.field("student", student, "Student to train: \"copy\" (of the teacher), \"config\" (built from student_config / student_overrides) or a checkpoint folder");
    v.field("student_config", student_config, "config.json of a student built from scratch (student: config); empty = the teacher's config");
    v.field("student_overrides", student_overrides, "Changes to the student's config.json (student: config), e.g. [num_hidden_layers=4, intermediate_size=1024]");
    v.field("student_init", student_init, "Weights of a student built from a config: \"teacher\" (the teacher's where shapes match, layers picked evenly) or \"random\"");
    v.field("init_std", init_std, "Standard deviation of random initialisation (normal; norms start at 1, biases at 0)", greater_than(0));
    v.field("dtype", dtype, "Compute dtype; auto = bf16 on CUDA, fp32 on CPU");
    v.field("device", device, "Device; auto = CUDA when available, else CPU");
  }
};

struct DataSection {
  std::string train;
  std::string validation;
  std::string tokenizer;
  std::int64_t seq_len = 512;
  std::int64_t micro_batch_size = 4;
  std::int64_t global_batch_size = 32;

  template <class V>
  void visit(V& v) {
    v.field("train", train, "HDF5 token file with the training tokens", Required{});
    v.field("validation", validation, "HDF5 token file for evaluation; empty = no evaluation");
    v.field("tokenizer", tokenizer, "The model's tokenizer (tokenizer.json, tokenizer.model or a folder); token files whose fingerprint differs are refused. Empty = the teacher's folder, if it holds one");
    v.field("seq_len", seq_len, "Tokens per training sequence", Range{2, 1 << 20});
    v.field("micro_batch_size", micro_batch_size, "Sequences per forward/backward pass on one rank", at_least(1));
    v.field("global_batch_size", global_batch_size, "Sequences per optimizer step over all ranks and micro-batches", at_least(1));
  }
};

struct EvalSection {
  std::int64_t seq_len = 512;
  std::int64_t batch_size = 8;
  std::int64_t max_windows = 0;
  std::int64_t every_steps = 0;

  template <class V>
  void visit(V& v) {
    v.field("seq_len", seq_len, "Tokens per evaluation window (perplexity context)", Range{2, 1 << 20});
    v.field("batch_size", batch_size, "Windows per evaluation forward pass", at_least(1));
    v.field("max_windows", max_windows, "Evaluate at most this many windows; 0 = all", at_least(0));
    v.field("every_steps", every_steps, "Evaluate every N training steps; 0 = only after the last step", at_least(0));
  }
};

struct TrainingSection {
  std::int64_t steps = 1000;
  double lr = 2e-5;
  double min_lr_ratio = 0.1;
  std::int64_t warmup_steps = 100;
  double weight_decay = 0.0;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double grad_clip = 1.0;
  LrSchedule schedule = LrSchedule::cosine;
  std::int64_t max_skipped_steps = 10;
  bool activation_checkpointing = false;

  template <class V>
  void visit(V& v) {
    v.field("steps", steps, "Optimizer steps to train", at_least(1));
    v.field("lr", lr, "Peak learning rate (AdamW)", greater_than(0));
    v.field("min_lr_ratio", min_lr_ratio, "Final learning rate as a fraction of lr", Range{0, 1});
    v.field("warmup_steps", warmup_steps, "Steps of linear warmup from 0 to lr", at_least(0));
    v.field("weight_decay", weight_decay, "AdamW decoupled weight decay (not applied to norms and biases)", at_least(0));
    v.field("beta1", beta1, "AdamW first-moment decay", Range{0, 1, false});
    v.field("beta2", beta2, "AdamW second-moment decay", Range{0, 1, false});
    v.field("eps", eps, "AdamW epsilon", greater_than(0));
    v.field("grad_clip", grad_clip, "Clip the global gradient norm to this; 0 = off", at_least(0));
    v.field("schedule", schedule, "Decay after warmup, from lr to lr * min_lr_ratio");
    v.field("max_skipped_steps", max_skipped_steps, "Steps with a NaN/Inf loss or gradient are skipped; abort after this many", at_least(0));
    v.field("activation_checkpointing", activation_checkpointing, "Keep only each student decoder layer's input in forward and run the layer again in backward (per-layer activation checkpointing: less activation memory for about a third more student compute)");
  }
};

// Loss = alpha * CE(student, labels) + beta * T^2 * KL(teacher_T || student_T) (Hinton et al. 2015)
//        + gamma * hidden-state loss over layer pairs (as in TinyBERT / MiniLLM-style recipes)
//        + router_aux_loss * the student's load-balancing loss (mixtures of experts, model/moe.h).
struct DistillSection {
  double alpha = 0.0;
  double beta = 1.0;
  double temperature = 1.0;
  double gamma = 0.0;
  HiddenLoss hidden_loss = HiddenLoss::mse;
  std::vector<std::int64_t> student_layers;
  std::vector<std::int64_t> teacher_layers;
  std::int64_t loss_chunk_tokens = 1024;
  double router_aux_loss = 0.0;

  template <class V>
  void visit(V& v) {
    v.field("alpha", alpha, "Weight of the cross-entropy loss on the ground-truth next token", at_least(0));
    v.field("beta", beta, "Weight of the KL distillation loss against the teacher", at_least(0));
    v.field("temperature", temperature, "Softmax temperature of the distillation loss", greater_than(0));
    v.field("gamma", gamma, "Weight of the hidden-state loss", at_least(0));
    v.field("hidden_loss", hidden_loss, "Hidden-state loss per layer pair: mse, or cosine (1 - cosine similarity)");
    v.field("student_layers", student_layers, "Student layers (0-based) whose outputs are matched; a projection is learned where widths differ");
    v.field("teacher_layers", teacher_layers, "Teacher layers paired with student_layers, same length");
    v.field("loss_chunk_tokens", loss_chunk_tokens, "Tokens per chunk of the fused cross-entropy + KL loss, which never holds more than one chunk's logits (docs/distillation.md); 0 = full [tokens x vocab] logits. Full logits are also used where an lm_head is quantized or pruned", at_least(0));
    v.field("router_aux_loss", router_aux_loss, "Weight of the student's load-balancing loss over its sparse layers (Switch Transformer's, as transformers' load_balancing_loss_func; mixture-of-experts students only; transformers' router_aux_loss_coef is 0.001); 0 = off", at_least(0));
  }
};

// The PTQ that initialises a quantized student, or that `qtrain quantize` runs: the method
// and its parameters. One struct for both, taken as is by quant::run_ptq; its keys sit
// directly in the quant section (quant.method, quant.gptq_dampening, ...).
struct PtqSection {
  PtqMethod method = PtqMethod::rtn;
  double gptq_dampening = 0.01;
  std::int64_t gptq_block_size = 128;
  bool gptq_act_order = true;
  double smoothquant_alpha = 0.5;
  std::int64_t awq_grid = 20;

  template <class V>
  void visit(V& v) {
    v.field("method", method, "PTQ that initialises the quantized student before training (and that `qtrain quantize` runs)");
    v.field("gptq_dampening", gptq_dampening, "GPTQ: fraction of the mean Hessian diagonal added to it", Range{0, 1});
    v.field("gptq_block_size", gptq_block_size, "GPTQ: columns processed per block (lazy batch updates)", at_least(1));
    v.field("gptq_act_order", gptq_act_order, "GPTQ: quantize columns in order of decreasing Hessian diagonal");
    v.field("smoothquant_alpha", smoothquant_alpha, "SmoothQuant: migration strength from activations to weights", Range{0, 1});
    v.field("awq_grid", awq_grid, "AWQ: points of the grid search over the scaling exponent", at_least(1));
  }
};

// Quantization-aware training and PTQ (docs/quantization.md). No rules: no quantization.
struct QuantSection {
  std::vector<std::string> rules;
  PtqSection ptq;
  ObserverKind observer = ObserverKind::minmax;
  double percentile = 99.99;
  double ema_decay = 0.9;
  std::int64_t calibration_sequences = 16;
  bool learnable_scales = false;
  StoredDtype scale_dtype = StoredDtype::bf16;
  StoredDtype export_dtype = StoredDtype::bf16;
  bool export_at_end = true;
  KvCache kv_cache = KvCache::none;

  template <class V>
  void visit(V& v) {
    v.field("rules", rules, "Schemes by module name, first match wins: [\"lm_head=none\", \"re:.*mlp\\\\..*=w4a16-g128\", \"re:.*self_attn\\\\..*=w8a8\"]; schemes: none, w4a16-g<N>[-asym], w8a16, w8a8, w8a8-dynamic, fp8, fp8-dynamic, fp8-block, nvfp4a16, nvfp4, mxfp4a16, mxfp4, w4afp8");
    ptq.visit(v);
    v.field("observer", observer, "Activation range observer for static input scales");
    v.field("percentile", percentile, "Percentile of |x| kept by the percentile observer", Range{50, 100});
    v.field("ema_decay", ema_decay, "Decay of the ema observer", Range{0, 1});
    v.field("calibration_sequences", calibration_sequences, "Sequences of data.seq_len tokens (the start of data.train, split over ranks) that calibrate activation scales and PTQ", at_least(1));
    v.field("learnable_scales", learnable_scales, "Learn weight scales with LSQ (symmetric int, FP8 and NVFP4 weights; not MXFP4 or w4afp8) instead of following min-max");
    v.field("scale_dtype", scale_dtype, "dtype the exported scales are stored in; simulated scales are rounded through it");
    v.field("export_dtype", export_dtype, "dtype of the export's unquantized tensors (embeddings, norms, an unquantized lm_head, biases); scales keep scale_dtype");
    v.field("export_at_end", export_at_end, "Export the compressed-tensors checkpoint to run.output_dir/export after the last step, and evaluate it");
    v.field("kv_cache", kv_cache, "KV-cache quantization: int8 (keys per channel, values per token; simulated only, engines do not load it) or fp8 (per-tensor, exported as k_scale/v_scale)");
  }
};

// Structured pruning with distillation recovery (docs/pruning.md): whole KV groups and MLP
// channels, uniform per layer, removed for real at export. Both sparsities 0: no pruning.
struct PruneSection {
  double mlp_sparsity = 0.0;
  double heads_sparsity = 0.0;
  double layer_sparsity = 0.0;
  double hidden_sparsity = 0.0;
  double expert_sparsity = 0.0;
  Importance importance = Importance::activation;
  LayerImportance layer_importance = LayerImportance::cosine;
  PruneSchedule schedule = PruneSchedule::oneshot;
  std::int64_t start_step = 0;
  std::int64_t end_step = 0;
  std::int64_t every_steps = 10;
  std::int64_t multiple = 64;
  std::int64_t calibration_sequences = 16;
  bool export_at_end = true;

  bool enabled() const {
    return mlp_sparsity > 0 || heads_sparsity > 0 || layer_sparsity > 0 || hidden_sparsity > 0 || expert_sparsity > 0;
  }

  template <class V>
  void visit(V& v) {
    v.field("mlp_sparsity", mlp_sparsity, "Target fraction of MLP intermediate channels removed in every layer (kept count rounded to `multiple`)", Range{0, 1});
    v.field("heads_sparsity", heads_sparsity, "Target fraction of KV groups (a kv head and its query heads) removed in every layer", Range{0, 1});
    v.field("layer_sparsity", layer_sparsity, "Depth: target fraction of whole decoder layers removed (kept count rounded to the nearest layer; Minitron, ShortGPT)", Range{0, 1});
    v.field("hidden_sparsity", hidden_sparsity, "Width of the residual stream: target fraction of the hidden_size (embedding) channels removed, from every norm and linear that reads or writes them (kept count rounded to `multiple`; Minitron)", Range{0, 1});
    v.field("expert_sparsity", expert_sparsity, "Mixtures of experts: target fraction of the experts removed in every sparse layer, with their router rows (at least num_experts_per_tok kept)", Range{0, 1});
    v.field("importance", importance, "How channels, heads, experts and hidden channels are ranked: activation (mean |activation| on calibration batches, Minitron; an expert's mean routed contribution), taylor (sum of |w * grad| of the loss), magnitude (L2 norm of the weights)");
    v.field("layer_importance", layer_importance, "How decoder layers are ranked: cosine (ShortGPT's block influence, 1 - mean cosine of the hidden state before and after the layer) or loss (Minitron: the calibration loss of the model without the layer, one forward per layer)");
    v.field("schedule", schedule, "oneshot: the target at start_step; gradual: cubic ramp from 0 at start_step to the target at end_step (Zhu & Gupta 2017), every every_steps");
    v.field("start_step", start_step, "Optimizer steps done before the (first) pruning; 0 = before training starts", at_least(0));
    v.field("end_step", end_step, "gradual: the step at which the target sparsity is reached", at_least(0));
    v.field("every_steps", every_steps, "gradual: recompute importance and grow the masks every N steps", at_least(1));
    v.field("multiple", multiple, "Kept MLP channels and kept hidden channels are a multiple of this (tensor-core friendly GEMMs); with group-wise weight quantization of the linears that read them, a multiple of its group size", at_least(1));
    v.field("calibration_sequences", calibration_sequences, "Sequences of data.seq_len tokens (the start of data.train, split over ranks) over which activation and taylor importance are measured", at_least(1));
    v.field("export_at_end", export_at_end, "Export the pruned (and, with quant.rules, quantized) checkpoint to run.output_dir/export after the last step, and evaluate it");
  }
};

struct CheckpointSection {
  std::int64_t every_steps = 500;
  std::int64_t keep_last = 2;
  std::string resume = "none";
  bool enabled = true;

  template <class V>
  void visit(V& v) {
    v.field("every_steps", every_steps, "Save a checkpoint every N steps; 0 = only after the last step", at_least(0));
    v.field("keep_last", keep_last, "Keep this many most recent checkpoints, delete older ones", at_least(1));
    v.field("resume", resume, "\"none\", \"auto\" (the latest checkpoint in run.output_dir, if any) or a checkpoint folder");
    v.field("enabled", enabled, "Save checkpoints; false saves none, not even after the last step, so the run cannot be resumed (benchmarks)");
  }
};

struct LoggingSection {
  std::int64_t every_steps = 10;
  bool jsonl = true;
  bool tensorboard = true;
  ProgressMode progress = ProgressMode::automatic;
  std::int64_t profile_step = 0;
  std::int64_t profile_steps = 1;

  template <class V>
  void visit(V& v) {
    v.field("every_steps", every_steps, "Log loss, learning rate and throughput every N steps", at_least(1));
    v.field("jsonl", jsonl, "Write metrics as JSON lines to run.output_dir/metrics.jsonl");
    v.field("tensorboard", tensorboard, "Write TensorBoard event files to run.output_dir/tensorboard");
    v.field("progress", progress, "Progress display on rank 0: auto (a bar on a terminal, lines otherwise), bar, lines, off");
    v.field("profile_step", profile_step, "Profile the training from this optimizer step (1-based) with the PyTorch profiler (Kineto, LibTorch 2.x): rank 0's Chrome trace of CPU ops and CUDA kernels goes to run.output_dir/profile/ (bench/profile_summary.py tabulates it, docs/performance.md); 0 = off", at_least(0));
    v.field("profile_steps", profile_steps, "How many optimizer steps logging.profile_step profiles", at_least(1));
  }
};

struct ParallelSection {
  std::int64_t bucket_mb = 25;
  std::int64_t timeout_s = 600;
  std::int64_t zero_stage = 0;
  bool shard_teacher = true;
  bool offload_optimizer = false;

  template <class V>
  void visit(V& v) {
    v.field("bucket_mb", bucket_mb, "Gradient all-reduce bucket size in MiB (fp32); buckets go out during backward", at_least(1));
    v.field("timeout_s", timeout_s, "A rank that makes no progress for this long (a step, an evaluation, a checkpoint, a start-up phase: loading, one layer of PTQ, resume) ends the whole job (a hung rank never hangs the rest)", at_least(1));
    v.field("zero_stage", zero_stage, "ZeRO stage: 0 = every rank holds all AdamW moments (gradients all-reduced); 1 = moments sharded over the ranks (gradients reduce-scattered, parameters all-gathered); 2 = gradients sharded too (reduce-scattered bucket by bucket in every micro-batch, no full gradient buffer); 3 = fp32 master weights sharded too, each decoder layer all-gathered just before its forward and its backward and freed after (docs/trainer.md)", Range{0, 3});
    v.field("shard_teacher", shard_teacher, "With zero_stage 3: the teacher's weights sharded over the ranks as well, each layer gathered for its forward and freed; false keeps a full teacher on every rank");
    v.field("offload_optimizer", offload_optimizer, "With zero_stage 3: each rank's fp32 master weights, gradients and AdamW moments live in (pinned) host memory and the update runs on the CPU, as ZeRO-Offload does; the GPU holds only the gathered layers, the teacher's shard and the activations");
  }
};

// The whole job. Parsed once (config/load.h); main hands each component its section.
struct JobConfig {
  RunSection run;
  ModelSection model;
  DataSection data;
  EvalSection eval;
  TrainingSection training;
  DistillSection distill;
  QuantSection quant;
  PruneSection prune;
  CheckpointSection checkpoint;
  LoggingSection logging;
  ParallelSection parallel;

  template <class V>
  void visit(V& v) {
    v.section("run", run, "Run identity and where its outputs go");
    v.section("model", model, "Teacher and student models");
    v.section("data", data, "Training and validation tokens and batch shape");
    v.section("eval", eval, "Perplexity evaluation on data.validation");
    v.section("training", training, "Optimizer steps and learning-rate schedule");
    v.section("distill", distill, "Knowledge-distillation loss");
    v.section("quant", quant, "Quantization-aware training, PTQ and export");
    v.section("prune", prune, "Structured pruning (KV groups, MLP channels) and its export");
    v.section("checkpoint", checkpoint, "Saving and resuming");
    v.section("logging", logging, "Metrics output");
    v.section("parallel", parallel, "Data parallelism over MPI ranks");
  }
};

}  // namespace qtrain::config
