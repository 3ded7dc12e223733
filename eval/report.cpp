// The report's page: summary, results table, plots, per-layer quantization errors.
#include "eval/report.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "common/atomic_file.h"
#include "eval/svg_plot.h"

namespace qtrain::eval {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const char* const kDash = "\u2014";  // an absent number

const char* const kStyle =
    "body{font-family:sans-serif;margin:24px auto;max-width:1000px;color:#222}"
    "table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ccc;padding:4px 10px;text-align:right}"
    "th:first-child,td:first-child{text-align:left}th{background:#f2f2f2}"
    ".charts{display:flex;flex-wrap:wrap;gap:8px}.note{color:#666;font-size:90%}";

std::string fmt(const char* format, double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), format, value);
  return buffer;
}

std::string number(const json& object, const std::string& key, const char* format) {
  if (!object.is_object() || !object.contains(key) || !object[key].is_number()) return kDash;
  return fmt(format, object[key].get<double>());
}

double mean(const Points& points) {
  double sum = 0;
  for (const auto& p : points) sum += p.second;
  return points.empty() ? 0.0 : sum / static_cast<double>(points.size());
}

std::string stage_label(const std::string& stage, const json& entry, bool quantized_export) {
  const bool fake = entry.value("fake_quant", false);
  if (stage == "teacher") return "Teacher";
  if (stage == "start") return fake ? "PTQ student (before training)" : "Student before training";
  if (stage == "student") return fake ? "QAT+KD student (fake quant)" : "Trained student";
  if (stage == "export") return quantized_export ? "Exported integer checkpoint" : "Exported checkpoint";
  return stage;
}

// One row of the results table, formatted once for both the HTML and the Markdown report.
struct ResultRow {
  std::string stage, model, step, perplexity, accuracy, size, bits, tokens_per_second;
};

std::vector<ResultRow> result_rows(const RunData& run) {
  const auto stages = run.results.value("stages", json::object());
  std::vector<ResultRow> rows;
  for (const char* stage : {"teacher", "start", "student", "export"}) {
    if (!stages.contains(stage)) continue;
    const auto& e = stages[stage];
    std::string bits = number(e, "bits_per_weight", "%.3f");
    if (bits == kDash && e.contains("weight_bits")) bits = number(e, "weight_bits", "%.3g") + " (simulated)";
    rows.push_back({stage, stage_label(stage, e, !run.quantization.is_null()), number(e, "step", "%.0f"),
                    number(e, "perplexity", "%.4f"), number(e, "accuracy", "%.4f"), number(e, "size_bytes", "%.0f"),
                    bits, number(e, "tokens_per_second", "%.1f")});
  }
  return rows;
}

std::string validation_note(const RunData& run) {
  const auto v = run.results.value("validation", json::object());
  return "Perplexity on " + v.value("data", std::string("the validation data")) + ", windows of " +
         number(v, "seq_len", "%.0f") +
         " tokens (docs/formats.md). Size: the safetensors files. Bits per weight: of the quantized linears, scales "
         "included, for an export; of all weights for the teacher; the simulated integer width for fake quant. "
         "Accuracy: multiple-choice tasks when measured.";
}

std::string results_table(const RunData& run) {
  std::string s = "<h2>Results</h2>\n";
  const auto rows = result_rows(run);
  if (rows.empty()) return s + "<p class=\"note\">no results.json in this run folder</p>\n";
  s += "<table id=\"results\"><tr><th>model</th><th>step</th><th>perplexity</th><th>accuracy</th>"
       "<th>size (bytes)</th><th>bits per weight</th><th>eval tokens/s</th></tr>\n";
  for (const auto& r : rows)
    s += "<tr data-stage=\"" + r.stage + "\"><td class=\"model\">" + svg::escape(r.model) + "</td><td class=\"step\">" +
         r.step + "</td><td class=\"perplexity\">" + r.perplexity + "</td><td class=\"accuracy\">" + r.accuracy +
         "</td><td class=\"size\">" + r.size + "</td><td class=\"bits\">" + r.bits +
         "</td><td class=\"tokens-per-second\">" + r.tokens_per_second + "</td></tr>\n";
  s += "</table>\n";
  return s + "<p class=\"note\">" + svg::escape(validation_note(run)) + "</p>\n";
}

std::string summary(const RunData& run) {
  std::string s = "<h2>Run</h2>\n<table id=\"summary\">\n";
  auto row = [&](const std::string& name, const std::string& value) {
    s += "<tr><td>" + name + "</td><td>" + svg::escape(value) + "</td></tr>\n";
  };
  row("folder", fs::absolute(run.dir).lexically_normal().string());
  const auto loss = run.train.find("loss");
  row("steps logged", loss == run.train.end() ? "0" : std::to_string(loss->second.size()));
  if (loss != run.train.end() && !loss->second.empty()) row("last step", fmt("%.0f", loss->second.back().first));
  const auto tps = run.train.find("tokens_per_second");
  if (tps != run.train.end()) row("training tokens/s (mean of logged steps)", fmt("%.1f", mean(tps->second)));
  const auto memory = run.train.find("peak_memory_bytes");
  if (memory != run.train.end() && !memory->second.empty())
    row("peak memory (rank 0)", fmt("%.1f MB", memory->second.back().second / 1e6));
  std::string checkpoints;
  for (const auto& c : run.checkpoints) checkpoints += (checkpoints.empty() ? "" : ", ") + c;
  row("checkpoints", checkpoints.empty() ? kDash : checkpoints);
  if (!run.quantization.is_null())
    row("export format", run.quantization.value("quant_method", std::string("?")) + " / " +
                             run.quantization.value("format", std::string("?")));
  return s + "</table>\n";
}

std::string line_chart(const std::string& title, const std::string& y_label, const std::map<std::string, Points>& source,
                       const std::vector<std::string>& keys, bool log_y = false) {
  svg::LineChart chart;
  chart.title = title;
  chart.x_label = "step";
  chart.y_label = y_label;
  chart.log_y = log_y;
  for (const auto& key : keys) {
    const auto it = source.find(key);
    if (it == source.end()) continue;
    const bool all_zero = std::all_of(it->second.begin(), it->second.end(), [](const auto& p) { return p.second == 0; });
    if (!all_zero || keys.size() == 1) chart.series.push_back({key, it->second});
  }
  return svg::render(chart);
}

std::string pruning(const RunData& run) {
  std::string s = "<h2>Pruning</h2>\n";
  if (run.prune.empty()) return s + "<p class=\"no-pruning\">no pruning in this run</p>\n";
  const auto config = run.results.value("student_config", json::object());
  svg::LineChart chart;
  chart.title = "Structured sparsity";
  chart.x_label = "step";
  for (const auto& [key, total_key, name] :
       {std::tuple<const char*, const char*, const char*>{"kept_mlp_channels", "intermediate_size", "MLP channels pruned"},
        {"kept_kv_groups", "num_key_value_heads", "KV groups pruned"}}) {
    const auto it = run.prune.find(key);
    if (it == run.prune.end()) continue;
    const double total = config.value(total_key, 0.0);
    svg::Series series{total > 0 ? name : key, {}};
    for (const auto& [step, kept] : it->second) series.points.emplace_back(step, total > 0 ? 1.0 - kept / total : kept);
    chart.y_label = total > 0 ? "fraction pruned" : "kept";
    chart.series.push_back(series);
  }
  return s + "<div class=\"charts\">" + svg::render(chart) + "</div>\n";
}

std::string quant_error(const RunData& run) {
  std::string s = "<h2>Quantization error per layer</h2>\n";
  const auto errors = run.results.value("quant_error", json::array());
  if (errors.empty()) return s + "<p class=\"no-quant-error\">no quantized export in this run</p>\n";
  std::vector<double> values;
  for (const auto& e : errors) values.push_back(e.value("relative_error", 0.0));
  const int bins = std::min<int>(12, std::max<int>(1, static_cast<int>(values.size())));
  const auto h = svg::histogram(values, bins);
  svg::BarChart chart;
  chart.title = "Relative weight error ||W - Q(W)|| / ||W||, " + std::to_string(values.size()) + " linears";
  chart.x_label = "relative error (bin start)";
  chart.y_label = "linears";
  for (size_t i = 0; i < h.counts.size(); ++i)
    chart.bars.push_back({fmt("%.3g", h.edges[i]), static_cast<double>(h.counts[i])});
  s += "<div class=\"charts\">" + svg::render(chart) + "</div>\n";
  s += "<details><summary>per layer</summary><table id=\"quant-error\"><tr><th>layer</th><th>scheme</th>"
       "<th>relative error</th></tr>\n";
  for (const auto& e : errors)
    s += "<tr><td>" + svg::escape(e.value("layer", std::string())) + "</td><td>" +
         svg::escape(e.value("scheme", std::string())) + "</td><td>" + number(e, "relative_error", "%.6f") + "</td></tr>\n";
  return s + "</table></details>\n";
}

}  // namespace

std::string render_report(const RunData& run) {
  const std::string name = fs::absolute(run.dir).lexically_normal().filename().string();
  std::string s = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>qtrain report: " +
                  svg::escape(name) + "</title><style>" + kStyle + "</style></head><body>\n";
  s += "<h1>qtrain report: " + svg::escape(name) + "</h1>\n";
  s += summary(run) + results_table(run);
  s += "<h2>Training</h2>\n<div class=\"charts\">\n";
  s += line_chart("Loss", "loss", run.train, {"loss", "loss_ce", "loss_kd", "loss_hidden"});
  s += line_chart("Learning rate", "lr", run.train, {"lr"});
  s += line_chart("Gradient norm (before clipping)", "grad norm", run.train, {"grad_norm"});
  s += line_chart("Throughput", "tokens/s", run.train, {"tokens_per_second"});
  if (!run.eval.empty()) s += line_chart("Validation perplexity", "perplexity", run.eval, {"perplexity"}, true);
  s += "</div>\n" + pruning(run) + quant_error(run);
  return s + "</body></html>\n";
}

std::string render_results_markdown(const RunData& run) {
  const auto rows = result_rows(run);
  if (rows.empty()) return "no results.json in " + run.dir + "\n";
  std::string s =
      "| model | step | perplexity | accuracy | size (bytes) | bits per weight | eval tokens/s |\n"
      "| --- | --- | --- | --- | --- | --- | --- |\n";
  for (const auto& r : rows)
    s += "| " + r.model + " | " + r.step + " | " + r.perplexity + " | " + r.accuracy + " | " + r.size + " | " + r.bits +
         " | " + r.tokens_per_second + " |\n";
  return s + "\n" + validation_note(run) + "\n";
}

std::string write_report(const std::string& dir, const std::string& output) {
  const auto path = output.empty() ? (fs::path(dir) / "report.html").string() : output;
  const auto run = read_run(dir);
  write_file_atomic(path, render_report(run));
  const auto name = fs::absolute(run.dir).lexically_normal().filename().string();
  write_file_atomic(fs::path(path).replace_extension(".md").string(),
                    "# qtrain report: " + name + "\n\n" + render_results_markdown(run) + "\nPlots: " +
                        fs::path(path).filename().string() + "\n");
  return path;
}

}  // namespace qtrain::eval
