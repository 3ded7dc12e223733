// Where a run's metrics go (rank 0 only): one JSON object per logged step appended to
// <output_dir>/metrics.jsonl, and the same scalars to TensorBoard under <output_dir>/tensorboard.
// Key names are the metric definitions of docs/metrics.md.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "common/append_file.h"
#include "trainer/tensorboard_writer.h"

namespace qtrain::trainer {

class MetricsLogger {
 public:
  // metrics.jsonl is appended to (a resumed run continues it): a torn last line that a
  // killed run left is cut off, and a symbolic link in its place is refused.
  MetricsLogger(const std::string& output_dir, bool jsonl, bool tensorboard);
  // `record` is a flat object of numbers; the line gets "step" and "kind": `prefix`. The
  // numbers also go to TensorBoard as "<prefix>/<key>". A line that cannot be written whole
  // (a full disk) throws qtrain::Error naming the file: no row is lost silently.
  void log(int64_t step, const nlohmann::json& record, const std::string& prefix = "train");

 private:
  std::unique_ptr<AppendFile> jsonl_;
  std::unique_ptr<TensorBoardWriter> tensorboard_;
};

}  // namespace qtrain::trainer
