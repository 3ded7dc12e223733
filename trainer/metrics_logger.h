// Where a run's metrics go (rank 0 only): one JSON object per logged step appended to
// <output_dir>/metrics.jsonl, and the same scalars to TensorBoard under <output_dir>/tensorboard.
// Key names are the metric definitions of docs/metrics.md.
#pragma once
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "trainer/tensorboard_writer.h"

namespace qtrain::trainer {

class MetricsLogger {
 public:
  MetricsLogger(const std::string& output_dir, bool jsonl, bool tensorboard);
  ~MetricsLogger();
  // `record` is a flat object of numbers; the line gets "step" and "kind": `prefix`. The
  // numbers also go to TensorBoard as "<prefix>/<key>".
  void log(int64_t step, const nlohmann::json& record, const std::string& prefix = "train");

 private:
  std::FILE* jsonl_ = nullptr;
  std::unique_ptr<TensorBoardWriter> tensorboard_;
};

}  // namespace qtrain::trainer
