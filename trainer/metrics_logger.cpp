// JSON lines (each written whole by one write, so a killed run keeps what it logged) and
// TensorBoard.
#include "trainer/metrics_logger.h"

#include <filesystem>

#include "common/error.h"

namespace qtrain::trainer {

MetricsLogger::MetricsLogger(const std::string& output_dir, bool jsonl, bool tensorboard) {
  std::filesystem::create_directories(output_dir);
  if (jsonl) {
    const auto path = (std::filesystem::path(output_dir) / "metrics.jsonl").string();
    jsonl_ = std::make_unique<AppendFile>(path, /*lines=*/true);
  }
  if (tensorboard) tensorboard_ = std::make_unique<TensorBoardWriter>((std::filesystem::path(output_dir) / "tensorboard").string());
}

void MetricsLogger::log(int64_t step, const nlohmann::json& record, const std::string& prefix) {
  nlohmann::json line = record;
  line["step"] = step;
  line["kind"] = prefix;  // train, eval, export, prune: which rows the run report plots
  if (jsonl_) jsonl_->append(line.dump() + "\n");
  if (tensorboard_) {
    for (auto it = record.begin(); it != record.end(); ++it)
      if (it.value().is_number() && it.key() != "step") tensorboard_->add_scalar(prefix + "/" + it.key(), it.value().get<double>(), step);
    tensorboard_->flush();
  }
}

}  // namespace qtrain::trainer
