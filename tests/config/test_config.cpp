// config/load.h: YAML + --set -> typed JobConfig, defaults, precedence, and every error
// class with its exact file, key, line and expectation; every file in configs/ loads.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>

#include "common/error.h"
#include "config/load.h"
#include "config/print.h"
#include "tests/test_util.h"

namespace qtrain::config {
namespace {

// The two keys without defaults, so that a test can focus on the others.
const char* const kRequired = "model:\n  teacher: t\ndata:\n  train: tokens.h5\n";

// Runs `load` and returns the qtrain::Error it must throw.
Error load_error(const std::function<void()>& load) {
  try {
    load();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "expected qtrain::Error";
  return Error("no error");
}

Error yaml_error(const std::string& yaml) {
  return load_error([&] { load_config_text(yaml, "job.yaml"); });
}

Error override_error(const std::string& assignment) {
  return load_error([&] { load_config_text(kRequired, "job.yaml", {assignment}); });
}

TEST(ConfigLoad, ParsesTypedValues) {
  const std::string yaml =
      "run:\n  name: exp7\n  seed: 42\n"
      "model:\n  teacher: /models/llama\n  student: /models/pruned\n  dtype: bf16\n  device: cuda\n"
      "data:\n  train: a.h5\n  validation: b.h5\n  seq_len: 2048\n  micro_batch_size: 2\n  global_batch_size: 16\n"
      "training:\n  lr: 3.0e-4\n  schedule: linear\n  grad_clip: 0\n"
      "logging:\n  tensorboard: true\n  jsonl: false\n";
  const JobConfig job = load_config_text(yaml, "job.yaml").job;
  EXPECT_EQ(job.run.name, "exp7");
  EXPECT_EQ(job.run.seed, 42);
  EXPECT_EQ(job.model.teacher, "/models/llama");
  EXPECT_EQ(job.model.student, "/models/pruned");
  EXPECT_EQ(job.model.dtype, ComputeDtype::bf16);
  EXPECT_EQ(job.model.device, DeviceChoice::cuda);
  EXPECT_EQ(job.data.validation, "b.h5");
  EXPECT_EQ(job.data.seq_len, 2048);
  EXPECT_EQ(job.data.micro_batch_size, 2);
  EXPECT_EQ(job.data.global_batch_size, 16);
  EXPECT_DOUBLE_EQ(job.training.lr, 3e-4);
  EXPECT_EQ(job.training.schedule, LrSchedule::linear);
  EXPECT_DOUBLE_EQ(job.training.grad_clip, 0.0);
  EXPECT_TRUE(job.logging.tensorboard);
  EXPECT_FALSE(job.logging.jsonl);
}

TEST(ConfigLoad, OmittedKeysKeepTheirDefaults) {
  const LoadedConfig loaded = load_config_text(kRequired, "job.yaml");
  const JobConfig& job = loaded.job;
  EXPECT_EQ(job.run.output_dir, "runs/demo");
  EXPECT_EQ(job.run.seed, 1234);
  EXPECT_EQ(job.model.student, "copy");
  EXPECT_EQ(job.model.dtype, ComputeDtype::automatic);
  EXPECT_EQ(job.data.seq_len, 512);
  EXPECT_EQ(job.data.validation, "");
  EXPECT_EQ(job.eval.max_windows, 0);
  EXPECT_EQ(job.training.steps, 1000);
  EXPECT_DOUBLE_EQ(job.training.lr, 2e-5);
  EXPECT_DOUBLE_EQ(job.training.min_lr_ratio, 0.1);
  EXPECT_EQ(job.training.schedule, LrSchedule::cosine);
  EXPECT_DOUBLE_EQ(job.distill.temperature, 1.0);
  EXPECT_EQ(job.checkpoint.resume, "none");
  EXPECT_EQ(job.logging.every_steps, 10);
  // Only what the file set has a source.
  EXPECT_EQ(loaded.sources.count("data.seq_len"), 0u);
  EXPECT_EQ(loaded.sources.at("data.train").describe(), "job.yaml:4");
}

TEST(ConfigLoad, InlineMappingsAndEmptySections) {
  const JobConfig job =
      load_config_text("model: {teacher: t, dtype: fp16}\ndata: {train: x.h5, seq_len: 8}\neval:\n", "job.yaml").job;
  EXPECT_EQ(job.model.dtype, ComputeDtype::fp16);
  EXPECT_EQ(job.data.seq_len, 8);
  EXPECT_EQ(job.eval.batch_size, 8);
}

TEST(ConfigOverride, SetBeatsFileAndLaterSetBeatsEarlier) {
  const std::string yaml = std::string(kRequired) + "  seq_len: 64\ntraining:\n  lr: 1.0e-4\n";
  const LoadedConfig loaded = load_config_text(
      yaml, "job.yaml", {"data.seq_len=128", "training.lr=5e-5", "data.seq_len=256", "logging.jsonl=false"});
  EXPECT_EQ(loaded.job.data.seq_len, 256);
  EXPECT_DOUBLE_EQ(loaded.job.training.lr, 5e-5);
  EXPECT_FALSE(loaded.job.logging.jsonl);
  EXPECT_EQ(loaded.sources.at("data.seq_len").describe(), "--set");
  EXPECT_EQ(loaded.sources.at("data.train").describe(), "job.yaml:4");
}

TEST(ConfigOverride, GivesRequiredKeysAndVerbatimStrings) {
  const JobConfig job =
      load_config_text("", "empty.yaml", {"model.teacher=/m/a: b #c", "data.train=t.h5", "run.name=1234"}).job;
  EXPECT_EQ(job.model.teacher, "/m/a: b #c");
  EXPECT_EQ(job.run.name, "1234");
}

TEST(ConfigErrors, UnknownKeySuggestsTheClosestKeyAtItsLevel) {
  Error e = yaml_error("model:\n  teacher: t\ndata:\n  train: x\n  seq_lenn: 64\n");
  EXPECT_EQ(e.file_name(), "job.yaml");
  EXPECT_EQ(e.key_name(), "data.seq_lenn");
  EXPECT_EQ(e.line_number(), 5);
  EXPECT_EQ(e.reason(), "unknown key; did you mean 'seq_len'?");
  EXPECT_EQ(e.expected_value(), "one of train, validation, tokenizer, seq_len, micro_batch_size, global_batch_size");
  EXPECT_STREQ(e.what(),
               "job.yaml:5: key 'data.seq_lenn': unknown key; did you mean 'seq_len'? "
               "(expected: one of train, validation, tokenizer, seq_len, micro_batch_size, global_batch_size)");
}

TEST(ConfigErrors, UnknownSectionAndUnrelatedKey) {
  Error section = yaml_error(std::string(kRequired) + "trainng:\n  steps: 5\n");
  EXPECT_EQ(section.key_name(), "trainng");
  EXPECT_EQ(section.line_number(), 5);
  EXPECT_EQ(section.reason(), "unknown key; did you mean 'training'?");
  EXPECT_EQ(section.expected_value(), "one of run, model, data, eval, training, distill, quant, prune, checkpoint, logging, parallel");

  Error unrelated = yaml_error(std::string(kRequired) + "training:\n  quantize_everything: true\n");
  EXPECT_EQ(unrelated.key_name(), "training.quantize_everything");
  EXPECT_EQ(unrelated.line_number(), 6);
  EXPECT_EQ(unrelated.reason(), "unknown key");
}

TEST(ConfigErrors, WrongType) {
  Error word = yaml_error(std::string(kRequired) + "  seq_len: abc\n");
  EXPECT_EQ(word.file_name(), "job.yaml");
  EXPECT_EQ(word.key_name(), "data.seq_len");
  EXPECT_EQ(word.line_number(), 5);
  EXPECT_EQ(word.reason(), "invalid value 'abc'");
  EXPECT_EQ(word.expected_value(), "integer");

  Error fraction = yaml_error(std::string(kRequired) + "  micro_batch_size: 1.5\n");
  EXPECT_EQ(fraction.key_name(), "data.micro_batch_size");
  EXPECT_EQ(fraction.expected_value(), "integer");

  Error quoted = yaml_error(std::string(kRequired) + "  seq_len: \"64\"\n");
  EXPECT_EQ(quoted.reason(), "got the quoted string \"64\"");
  EXPECT_EQ(quoted.expected_value(), "integer");

  Error boolean = yaml_error(std::string(kRequired) + "logging:\n  jsonl: yes\n");
  EXPECT_EQ(boolean.key_name(), "logging.jsonl");
  EXPECT_EQ(boolean.line_number(), 6);
  EXPECT_EQ(boolean.expected_value(), "boolean (true or false)");

  Error list = yaml_error(std::string(kRequired) + "training:\n  lr: [1, 2]\n");
  EXPECT_EQ(list.reason(), "got a list");
  EXPECT_EQ(list.expected_value(), "number");

  Error section = yaml_error(std::string(kRequired) + "eval: 5\n");
  EXPECT_EQ(section.key_name(), "eval");
  EXPECT_EQ(section.line_number(), 5);
  EXPECT_EQ(section.reason(), "expected a mapping");
}

TEST(ConfigErrors, OutOfRange) {
  Error seq_len = yaml_error(std::string(kRequired) + "  seq_len: 0\n");
  EXPECT_EQ(seq_len.key_name(), "data.seq_len");
  EXPECT_EQ(seq_len.line_number(), 5);
  EXPECT_EQ(seq_len.reason(), "value 0 is out of range");
  EXPECT_EQ(seq_len.expected_value(), "in [2, 1048576]");

  Error lr = yaml_error(std::string(kRequired) + "training:\n  steps: 10\n  lr: -1.0e-4\n");
  EXPECT_EQ(lr.key_name(), "training.lr");
  EXPECT_EQ(lr.line_number(), 7);
  EXPECT_EQ(lr.expected_value(), "> 0");

  Error zero_lr = yaml_error(std::string(kRequired) + "training:\n  lr: 0\n");
  EXPECT_EQ(zero_lr.expected_value(), "> 0");

  Error ratio = yaml_error(std::string(kRequired) + "training:\n  min_lr_ratio: 1.5\n");
  EXPECT_EQ(ratio.expected_value(), "in [0, 1]");

  Error windows = yaml_error(std::string(kRequired) + "eval:\n  max_windows: -1\n");
  EXPECT_EQ(windows.key_name(), "eval.max_windows");
  EXPECT_EQ(windows.expected_value(), ">= 0");
}

TEST(ConfigErrors, InvalidChoice) {
  Error e = yaml_error("model:\n  teacher: t\n  dtype: int8\ndata:\n  train: x\n");
  EXPECT_EQ(e.file_name(), "job.yaml");
  EXPECT_EQ(e.key_name(), "model.dtype");
  EXPECT_EQ(e.line_number(), 3);
  EXPECT_EQ(e.reason(), "invalid choice 'int8'");
  EXPECT_EQ(e.expected_value(), "one of auto, fp32, bf16, fp16");

  Error schedule = yaml_error(std::string(kRequired) + "training:\n  schedule: Cosine\n");
  EXPECT_EQ(schedule.key_name(), "training.schedule");
  EXPECT_EQ(schedule.expected_value(), "one of cosine, linear, constant");
}

TEST(ConfigErrors, MalformedYaml) {
  Error e = yaml_error("model:\n  teacher: t\ndata:\n  train: a: b\n");
  EXPECT_EQ(e.file_name(), "job.yaml");
  EXPECT_EQ(e.key_name(), "");
  EXPECT_EQ(e.line_number(), 4);
  EXPECT_EQ(e.reason(), "malformed YAML: illegal map value");
  EXPECT_EQ(e.expected_value(), "well-formed YAML");

  Error top = yaml_error("- model\n- data\n");
  EXPECT_EQ(top.line_number(), 1);
  EXPECT_EQ(top.reason(), "the top level must be a mapping of sections");

  Error duplicate = yaml_error(std::string(kRequired) + "  train: other.h5\n");
  EXPECT_EQ(duplicate.key_name(), "data.train");
  EXPECT_EQ(duplicate.line_number(), 5);
  EXPECT_EQ(duplicate.reason(), "duplicate key");
}

TEST(ConfigErrors, MissingRequiredKey) {
  Error teacher = yaml_error("run:\n  seed: 1\nmodel:\n  dtype: bf16\ndata:\n  train: x\n");
  EXPECT_EQ(teacher.file_name(), "job.yaml");
  EXPECT_EQ(teacher.key_name(), "model.teacher");
  EXPECT_EQ(teacher.line_number(), 3);  // the model: section that lacks it
  EXPECT_EQ(teacher.reason(), "missing required key");
  EXPECT_EQ(teacher.expected_value(), "string or none");

  Error train = yaml_error("model:\n  teacher: t\n");
  EXPECT_EQ(train.key_name(), "data.train");
  EXPECT_EQ(train.line_number(), -1);  // no data: section at all

  Error empty_value = yaml_error("model:\n  teacher:\ndata:\n  train: x\n");
  EXPECT_EQ(empty_value.key_name(), "model.teacher");
  EXPECT_EQ(empty_value.line_number(), 2);
  EXPECT_EQ(empty_value.reason(), "missing value");
}

TEST(ConfigErrors, OverridesNameSetAndTheKey) {
  Error unknown = override_error("data.seq_lenn=5");
  EXPECT_EQ(unknown.file_name(), "--set");
  EXPECT_EQ(unknown.key_name(), "data.seq_lenn");
  EXPECT_EQ(unknown.line_number(), -1);
  EXPECT_EQ(unknown.reason(), "unknown key; did you mean 'seq_len'?");

  Error section = override_error("trainig.lr=1");
  EXPECT_EQ(section.key_name(), "trainig.lr");
  EXPECT_EQ(section.reason(), "unknown key; did you mean 'training'?");

  Error type = override_error("data.seq_len=abc");
  EXPECT_EQ(type.file_name(), "--set");
  EXPECT_EQ(type.key_name(), "data.seq_len");
  EXPECT_EQ(type.expected_value(), "integer");

  Error range = override_error("training.lr=-3");
  EXPECT_EQ(range.key_name(), "training.lr");
  EXPECT_EQ(range.expected_value(), "> 0");

  Error choice = override_error("model.device=tpu");
  EXPECT_EQ(choice.expected_value(), "one of auto, cpu, cuda");

  Error malformed = override_error("data.seq_len");
  EXPECT_EQ(malformed.key_name(), "data.seq_len");
  EXPECT_EQ(malformed.reason(), "malformed override");
  EXPECT_EQ(malformed.expected_value(), "key=value, e.g. data.seq_len=128");

  Error whole_section = override_error("data=5");
  EXPECT_EQ(whole_section.reason(), "is a section, not a field");
}

TEST(ConfigErrors, CrossFieldRulesNameTheKeyThatBreaksThem) {
  Error batch = yaml_error(std::string(kRequired) + "  micro_batch_size: 4\n  global_batch_size: 10\n");
  EXPECT_EQ(batch.file_name(), "job.yaml");
  EXPECT_EQ(batch.key_name(), "data.global_batch_size");
  EXPECT_EQ(batch.line_number(), 6);
  EXPECT_EQ(batch.reason(), "global_batch_size 10 is not a multiple of micro_batch_size 4");
  EXPECT_EQ(batch.expected_value(), "a multiple of data.micro_batch_size");

  Error warmup = load_error([] { load_config_text(kRequired, "job.yaml", {"training.steps=10"}); });
  EXPECT_EQ(warmup.key_name(), "training.warmup_steps");
  EXPECT_EQ(warmup.file_name(), "job.yaml");  // warmup_steps kept its default of 100
  EXPECT_EQ(warmup.line_number(), -1);
  EXPECT_EQ(warmup.expected_value(), "<= training.steps");

  Error eval = load_error([] { load_config_text(kRequired, "job.yaml", {"eval.every_steps=50"}); });
  EXPECT_EQ(eval.key_name(), "eval.every_steps");
  EXPECT_EQ(eval.file_name(), "--set");

  Error loss = load_error([] { load_config_text(kRequired, "job.yaml", {"distill.beta=0"}); });
  EXPECT_EQ(loss.key_name(), "distill.beta");
  EXPECT_EQ(loss.expected_value(), "alpha > 0, beta > 0 or gamma > 0");

  Error taylor = load_error([] {
    load_config_text(kRequired, "job.yaml",
                     {"distill.beta=0", "distill.gamma=1", "distill.student_layers=[0]", "distill.teacher_layers=[0]",
                      "prune.mlp_sparsity=0.5", "prune.importance=taylor"});
  });
  EXPECT_EQ(taylor.key_name(), "prune.importance");
  EXPECT_EQ(taylor.reason(), "taylor importance needs the gradient of an output loss, but distill.alpha and distill.beta are 0");

  Error start = load_error([] {
    load_config_text(kRequired, "job.yaml", {"training.warmup_steps=0", "training.steps=10", "prune.heads_sparsity=0.5",
                                             "prune.schedule=gradual", "prune.start_step=5", "prune.end_step=20"});
  });
  EXPECT_EQ(start.key_name(), "prune.end_step");
  EXPECT_EQ(start.expected_value(), "in (prune.start_step, training.steps]");
}

TEST(ConfigErrors, UnreadableFile) {
  Error e = load_error([] { load_config(std::string("no/such/job.yaml"), {}); });
  EXPECT_EQ(e.file_name(), "no/such/job.yaml");
  EXPECT_EQ(e.reason(), "cannot open the config file");
}

TEST(ConfigFiles, EveryShippedConfigLoadsAndValidates) {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(testing::source_dir() / "configs")) {
    if (entry.path().extension() != ".yaml") continue;
    SCOPED_TRACE(entry.path().string());
    const LoadedConfig loaded = load_config(entry.path().string(), {});
    EXPECT_FALSE(loaded.job.data.train.empty());  // required: given by every file
    ++count;
  }
  EXPECT_GE(count, 2);
  const JobConfig qat = load_config((testing::source_dir() / "configs/qat_int4.yaml").string(), {}).job;
  EXPECT_EQ(qat.data.seq_len, 2048);
  EXPECT_EQ(qat.model.dtype, ComputeDtype::bf16);
}

TEST(ConfigFiles, EmbeddedDefaultIsConfigsDemo) {
  const LoadedConfig embedded = load_config(std::nullopt, {});
  const LoadedConfig demo = load_config((testing::source_dir() / "configs/demo.yaml").string(), {});
  EXPECT_EQ(embedded.origin, "<embedded configs/demo.yaml>");
  EXPECT_EQ(embedded.job.model.teacher, ".cache/demo/teacher");
  EXPECT_EQ(embedded.job.data.train, ".cache/demo/train.h5");
  EXPECT_EQ(embedded.job.data.seq_len, 256);
  JobConfig a = embedded.job, b = demo.job;
  EXPECT_EQ(to_yaml(bind(a)), to_yaml(bind(b)));
}

}  // namespace
}  // namespace qtrain::config
