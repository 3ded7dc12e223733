// The enumerated choices of a job config, bound where the config is parsed: a field of one of
// these types reads only its names (anything else is an error naming the file, the key and
// the names), the reference lists them, and the components that take a choice switch over
// the enum instead of comparing strings. Each enum's names, in declaration order, are its
// EnumNames specialisation; name_of() and the schema (config/schema.h) use them.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"

namespace qtrain::config {

template <class E>
struct EnumNames;  // static constexpr std::pair<E, const char*> values[]

#define QTRAIN_ENUM_NAMES(E, ...)                                      \
  template <>                                                          \
  struct EnumNames<E> {                                                \
    static constexpr std::pair<E, const char*> values[] = {__VA_ARGS__}; \
  }

template <class E>
constexpr const char* name_of(E value) {
  for (const auto& [v, name] : EnumNames<E>::values)
    if (v == value) return name;
  return "?";
}

template <class E>
std::vector<std::string> names_of() {
  std::vector<std::string> out;
  for (const auto& [v, name] : EnumNames<E>::values) out.emplace_back(name);
  return out;
}

// The choice named `text`, for a value that does not come through a config file (a command
// line flag: `key` names it in the error, which lists the names).
template <class E>
E parse_choice(const std::string& text, const std::string& key) {
  std::string expected;
  for (const auto& [value, name] : EnumNames<E>::values) {
    if (text == name) return value;
    expected += (expected.empty() ? "one of " : ", ") + std::string(name);
  }
  throw Error("invalid choice '" + text + "'").key(key).expected(expected);
}

// model.dtype: the compute dtype; automatic = bf16 on CUDA, fp32 on the CPU.
enum class ComputeDtype { automatic, fp32, bf16, fp16 };
QTRAIN_ENUM_NAMES(ComputeDtype, {ComputeDtype::automatic, "auto"}, {ComputeDtype::fp32, "fp32"},
                  {ComputeDtype::bf16, "bf16"}, {ComputeDtype::fp16, "fp16"});

// quant.scale_dtype, quant.export_dtype: a stored floating-point dtype.
enum class StoredDtype { bf16, fp16, fp32 };
QTRAIN_ENUM_NAMES(StoredDtype, {StoredDtype::bf16, "bf16"}, {StoredDtype::fp16, "fp16"}, {StoredDtype::fp32, "fp32"});

// model.device: automatic = CUDA when available, else the CPU.
enum class DeviceChoice { automatic, cpu, cuda };
QTRAIN_ENUM_NAMES(DeviceChoice, {DeviceChoice::automatic, "auto"}, {DeviceChoice::cpu, "cpu"},
                  {DeviceChoice::cuda, "cuda"});

// model.student is "copy", "config" or a checkpoint folder: ModelSection::student_source().
enum class StudentSource { copy, config, checkpoint };

// model.student_init: a student built from a config starts from the teacher's weights where
// shapes match, or from random ones.
enum class StudentInit { teacher, random };
QTRAIN_ENUM_NAMES(StudentInit, {StudentInit::teacher, "teacher"}, {StudentInit::random, "random"});

// training.schedule: the decay after warmup.
enum class LrSchedule { cosine, linear, constant };
QTRAIN_ENUM_NAMES(LrSchedule, {LrSchedule::cosine, "cosine"}, {LrSchedule::linear, "linear"},
                  {LrSchedule::constant, "constant"});

// distill.hidden_loss: per layer pair.
enum class HiddenLoss { mse, cosine };
QTRAIN_ENUM_NAMES(HiddenLoss, {HiddenLoss::mse, "mse"}, {HiddenLoss::cosine, "cosine"});

// quant.method: the PTQ that initialises the quantized student.
enum class PtqMethod { rtn, gptq, awq, smoothquant };
QTRAIN_ENUM_NAMES(PtqMethod, {PtqMethod::rtn, "rtn"}, {PtqMethod::gptq, "gptq"}, {PtqMethod::awq, "awq"},
                  {PtqMethod::smoothquant, "smoothquant"});

// quant.observer: the range observer of static activation scales.
enum class ObserverKind { minmax, ema, percentile, mse };
QTRAIN_ENUM_NAMES(ObserverKind, {ObserverKind::minmax, "minmax"}, {ObserverKind::ema, "ema"},
                  {ObserverKind::percentile, "percentile"}, {ObserverKind::mse, "mse"});

// quant.kv_cache: KV-cache quantization.
enum class KvCache { none, int8, fp8 };
QTRAIN_ENUM_NAMES(KvCache, {KvCache::none, "none"}, {KvCache::int8, "int8"}, {KvCache::fp8, "fp8"});

// prune.importance: how channels and KV groups are ranked.
enum class Importance { activation, taylor, magnitude };
QTRAIN_ENUM_NAMES(Importance, {Importance::activation, "activation"}, {Importance::taylor, "taylor"},
                  {Importance::magnitude, "magnitude"});

// prune.layer_importance: how whole decoder layers are ranked (depth pruning).
enum class LayerImportance { cosine, loss };
QTRAIN_ENUM_NAMES(LayerImportance, {LayerImportance::cosine, "cosine"}, {LayerImportance::loss, "loss"});

// prune.schedule: all at once, or a cubic ramp.
enum class PruneSchedule { oneshot, gradual };
QTRAIN_ENUM_NAMES(PruneSchedule, {PruneSchedule::oneshot, "oneshot"}, {PruneSchedule::gradual, "gradual"});

// logging.progress: rank 0's progress display; automatic = a bar on a terminal, else lines.
enum class ProgressMode { automatic, bar, lines, off };
QTRAIN_ENUM_NAMES(ProgressMode, {ProgressMode::automatic, "auto"}, {ProgressMode::bar, "bar"},
                  {ProgressMode::lines, "lines"}, {ProgressMode::off, "off"});

}  // namespace qtrain::config
