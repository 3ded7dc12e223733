// The typed config tree of a qtrain job (cf. torchtitan's job_config.py): one struct per
// section, each listing its fields once in visit(). A component receives only its section.
// To add a field: declare it with its default and add one v.field(...) line to visit().
#pragma once
#include <cstdint>
#include <string>

#include "config/rules.h"

namespace qtrain::config {

// Names end in "Section" so they do not collide with model::ModelConfig (the HF config.json).
struct RunSection {
  std::string name = "demo";
  std::string output_dir = "runs/demo";
  std::int64_t seed = 1234;

  template <class V>
  void visit(V& v) {
    v.field("name", name, "Name of the run, used in logs and metrics");
    v.field("output_dir", output_dir, "Directory for checkpoints, logs and exported models (created if missing)");
    v.field("seed", seed, "Seed for weight init, data order and dropout; the same seed gives the same run", at_least(0));
  }
};

struct ModelSection {
  std::string teacher;
  std::string student = "copy";
  std::string dtype = "auto";
  std::string device = "auto";

  template <class V>
  void visit(V& v) {
    v.field("teacher", teacher, "Hugging Face checkpoint folder of the teacher (config.json and safetensors files)", Required{});
    v.field("student", student, "Student to train: \"copy\" (a copy of the teacher) or a checkpoint folder");
    v.field("dtype", dtype, "Compute dtype; auto = bf16 on CUDA, fp32 on CPU", Choices{"auto", "fp32", "bf16", "fp16"});
    v.field("device", device, "Device; auto = CUDA when available, else CPU", Choices{"auto", "cpu", "cuda"});
  }
};

struct DataSection {
  std::string train;
  std::string validation;
  std::int64_t seq_len = 512;
  std::int64_t micro_batch_size = 4;
  std::int64_t global_batch_size = 32;

  template <class V>
  void visit(V& v) {
    v.field("train", train, "HDF5 token file with the training tokens", Required{});
    v.field("validation", validation, "HDF5 token file for evaluation; empty = no evaluation");
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
  double grad_clip = 1.0;
  std::string schedule = "cosine";

  template <class V>
  void visit(V& v) {
    v.field("steps", steps, "Optimizer steps to train", at_least(1));
    v.field("lr", lr, "Peak learning rate (AdamW)", greater_than(0));
    v.field("min_lr_ratio", min_lr_ratio, "Final learning rate as a fraction of lr", Range{0, 1});
    v.field("warmup_steps", warmup_steps, "Steps of linear warmup from 0 to lr", at_least(0));
    v.field("weight_decay", weight_decay, "AdamW decoupled weight decay", at_least(0));
    v.field("grad_clip", grad_clip, "Clip the global gradient norm to this; 0 = off", at_least(0));
    v.field("schedule", schedule, "Decay after warmup, from lr to lr * min_lr_ratio", Choices{"cosine", "linear", "constant"});
  }
};

// Loss = alpha * CE(student, labels) + beta * T^2 * KL(teacher_T || student_T) (Hinton et al. 2015).
struct DistillSection {
  double alpha = 0.0;
  double beta = 1.0;
  double temperature = 1.0;

  template <class V>
  void visit(V& v) {
    v.field("alpha", alpha, "Weight of the cross-entropy loss on the ground-truth next token", at_least(0));
    v.field("beta", beta, "Weight of the KL distillation loss against the teacher", at_least(0));
    v.field("temperature", temperature, "Softmax temperature of the distillation loss", greater_than(0));
  }
};

struct CheckpointSection {
  std::int64_t every_steps = 500;
  std::int64_t keep_last = 2;
  std::string resume = "none";

  template <class V>
  void visit(V& v) {
    v.field("every_steps", every_steps, "Save a checkpoint every N steps; 0 = only after the last step", at_least(0));
    v.field("keep_last", keep_last, "Keep this many most recent checkpoints, delete older ones", at_least(1));
    v.field("resume", resume, "\"none\", \"auto\" (the latest checkpoint in run.output_dir, if any) or a checkpoint folder");
  }
};

struct LoggingSection {
  std::int64_t every_steps = 10;
  bool jsonl = true;
  bool tensorboard = false;

  template <class V>
  void visit(V& v) {
    v.field("every_steps", every_steps, "Log loss, learning rate and throughput every N steps", at_least(1));
    v.field("jsonl", jsonl, "Write metrics as JSON lines to run.output_dir/metrics.jsonl");
    v.field("tensorboard", tensorboard, "Write TensorBoard event files to run.output_dir/tensorboard");
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
  CheckpointSection checkpoint;
  LoggingSection logging;

  template <class V>
  void visit(V& v) {
    v.section("run", run, "Run identity and where its outputs go");
    v.section("model", model, "Teacher and student models");
    v.section("data", data, "Training and validation tokens and batch shape");
    v.section("eval", eval, "Perplexity evaluation on data.validation");
    v.section("training", training, "Optimizer steps and learning-rate schedule");
    v.section("distill", distill, "Knowledge-distillation loss");
    v.section("checkpoint", checkpoint, "Saving and resuming");
    v.section("logging", logging, "Metrics output");
  }
};

}  // namespace qtrain::config
