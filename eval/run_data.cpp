// Reading metrics.jsonl, results.json and the export folder of a run.
#include "eval/run_data.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/error.h"

namespace qtrain::eval {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// kind -> key -> step -> value; later rows replace earlier ones of the same step.
using Table = std::map<std::string, std::map<std::string, std::map<double, double>>>;

std::map<std::string, Points> flatten(const std::map<std::string, std::map<double, double>>& columns) {
  std::map<std::string, Points> out;
  for (const auto& [key, by_step] : columns) out[key].assign(by_step.begin(), by_step.end());
  return out;
}

Table read_metrics(const fs::path& path) {
  Table table;
  std::ifstream in(path, std::ios::binary);
  std::stringstream whole;
  whole << in.rdbuf();
  const std::string text = whole.str();
  std::istringstream lines(text);
  std::string line;
  for (int number = 1; std::getline(lines, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto row = json::parse(line, nullptr, false);
    // A run killed (or a disk filled) while writing leaves a last line without its newline:
    // that half row is skipped (the next run's logger cuts it off); anywhere else a row
    // that does not parse is an error.
    const bool torn_last = lines.eof() && !text.empty() && text.back() != '\n';
    if (torn_last && !row.is_object()) break;
    if (!row.is_object() || !row.contains("step") || !row["step"].is_number())
      throw Error("not a metrics row (a JSON object with a numeric \"step\")").file(path.string()).line(number);
    const double step = row["step"].get<double>();
    auto& columns = table[row_kind(row)];
    for (const auto& [key, value] : row.items())
      if (key != "step" && value.is_number()) columns[key][step] = value.get<double>();
  }
  return table;
}

json read_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in) return nullptr;
  auto j = json::parse(in, nullptr, false);
  if (j.is_discarded()) throw Error("not valid JSON").file(path.string());
  return j;
}

}  // namespace

std::string row_kind(const json& row) {
  if (row.contains("kind") && row["kind"].is_string()) return row["kind"].get<std::string>();
  if (row.contains("loss")) return "train";
  if (row.contains("kept_mlp_channels") || row.contains("kept_kv_groups")) return "prune";
  if (row.contains("perplexity")) return "eval";
  return "other";
}

RunData read_run(const std::string& dir) {
  if (!fs::is_directory(dir)) throw Error("not a run folder").file(dir).expected("a qtrain run.output_dir");
  RunData run;
  run.dir = dir;
  auto table = read_metrics(fs::path(dir) / "metrics.jsonl");
  run.train = flatten(table["train"]);
  run.eval = flatten(table["eval"]);
  run.prune = flatten(table["prune"]);
  const auto results = read_json(fs::path(dir) / "results.json");
  if (results.is_object()) run.results = results;
  std::string export_dir = "export";
  if (run.results.contains("stages") && run.results["stages"].contains("export"))
    export_dir = run.results["stages"]["export"].value("path", export_dir);
  const auto config = read_json(fs::path(dir) / export_dir / "config.json");
  if (config.is_object() && config.contains("quantization_config")) run.quantization = config["quantization_config"];
  if (fs::is_directory(fs::path(dir) / "checkpoints"))
    for (const auto& item : fs::directory_iterator(fs::path(dir) / "checkpoints"))
      if (item.is_directory()) run.checkpoints.push_back(item.path().filename().string());
  std::sort(run.checkpoints.begin(), run.checkpoints.end());
  return run;
}

}  // namespace qtrain::eval
