// A run folder (run.output_dir) as the report reads it (docs/report.md): the rows of
// metrics.jsonl by kind, results.json, the export's quantization_config and the
// checkpoints. Rows of a step logged twice (a resumed run redoes steps) count once, the
// later one.
#pragma once
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace qtrain::eval {

using Points = std::vector<std::pair<double, double>>;  // (step, value), step ascending

struct RunData {
  std::string dir;
  std::map<std::string, Points> train;  // "loss", "loss_ce", "lr", "grad_norm", ...
  std::map<std::string, Points> eval;   // "perplexity" of the evaluations during the run
  std::map<std::string, Points> prune;  // "kept_mlp_channels", "kept_kv_groups"
  nlohmann::json results = nlohmann::json::object();  // results.json, {} when absent
  nlohmann::json quantization;          // export/config.json's quantization_config, or null
  std::vector<std::string> checkpoints;  // folder names under checkpoints/, sorted
};

// Throws qtrain::Error naming the file and line of a malformed metrics row, or when `dir`
// is not a folder. Missing files leave their parts empty.
RunData read_run(const std::string& dir);

// The kind of a metrics.jsonl row: its "kind" key (MetricsLogger writes it), else guessed
// from its keys as rows of older runs need ("loss" -> train, "kept_*" -> prune,
// "perplexity" -> eval).
std::string row_kind(const nlohmann::json& row);

}  // namespace qtrain::eval
