// The run report: a hand-written run folder gives exactly its numbers in the table and its
// series in the plots; a real qtrain run with QAT and export gives a report that headless
// Chromium renders with every plot and the numbers of results.json, which agree with what
// qtrain printed and with the export folder on disk.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "eval/report.h"
#include "tests/test_util.h"

namespace qtrain::eval {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

void write(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

std::string fmt(const char* format, double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), format, value);
  return buffer;
}

// The <tr> of `stage` in the results table ("" if absent).
std::string stage_row(const std::string& html, const std::string& stage) {
  const auto begin = html.find("<tr data-stage=\"" + stage + "\"");
  if (begin == std::string::npos) return "";
  return html.substr(begin, html.find("</tr>", begin) - begin);
}

std::string cell(const std::string& row, const std::string& cls) {
  const auto begin = row.find("<td class=\"" + cls + "\">");
  if (begin == std::string::npos) return "<no cell " + cls + ">";
  const auto from = begin + cls.size() + 13;
  return row.substr(from, row.find("</td>", from) - from);
}

const char* const kDash = "\u2014";

fs::path hand_written_run() {
  const auto dir = testing::scratch_dir() / "run";
  write(dir / "metrics.jsonl",
        // a resumed run: step 2 logged twice, the later row counts; a row of an older run without "kind"
        R"({"loss":4.0,"loss_ce":3.0,"loss_kd":1.5,"loss_hidden":0.0,"lr":0.001,"grad_norm":2.5,"tokens_per_second":100,"step":1,"kind":"train"}
{"loss":3.9,"loss_ce":2.9,"loss_kd":1.4,"loss_hidden":0.0,"lr":0.002,"grad_norm":2.0,"tokens_per_second":300,"step":2,"kind":"train"}
{"loss":3.5,"loss_ce":2.5,"loss_kd":1.0,"loss_hidden":0.0,"lr":0.002,"grad_norm":1.0,"tokens_per_second":200,"step":2,"kind":"train"}
{"loss":3.0,"loss_ce":2.0,"loss_kd":0.75,"loss_hidden":0.0,"lr":0.0005,"grad_norm":0.5,"tokens_per_second":300,"step":3}
{"perplexity":21.5,"step":3,"kind":"eval"}
{"perplexity":21.75,"step":3,"kind":"export"}
)");
  write(dir / "results.json", R"({"version":1,"validation":{"data":"val.h5","seq_len":64,"max_windows":0},
  "stages":{"teacher":{"step":0,"perplexity":12.345678,"tokens_per_second":5000.25,"size_bytes":123456,"bits_per_weight":32.0},
            "start":{"step":0,"perplexity":40.5,"tokens_per_second":900,"fake_quant":true,"weight_bits":4},
            "student":{"step":3,"perplexity":21.5,"fake_quant":true,"weight_bits":4,"accuracy":0.625},
            "export":{"step":3,"perplexity":21.75,"size_bytes":98765,"bits_per_weight":4.5,"path":"export"}},
  "quant_error":[{"layer":"model.layers.0.mlp.down_proj","scheme":"w4a16-g16","relative_error":0.08},
                 {"layer":"model.layers.0.mlp.up_proj","scheme":"w4a16-g16","relative_error":0.12}]})");
  write(dir / "export/config.json", R"({"quantization_config":{"quant_method":"compressed-tensors","format":"pack-quantized"}})");
  fs::create_directories(dir / "checkpoints/step_00000003");
  return dir;
}

TEST(RunData, ReadsRowsByKindAndTheLaterRowOfARedoneStep) {
  const auto run = read_run(hand_written_run().string());
  ASSERT_EQ(run.train.at("loss").size(), 3u);
  EXPECT_EQ(run.train.at("loss")[1], (std::pair<double, double>{2, 3.5}));
  EXPECT_EQ(run.train.at("lr")[2], (std::pair<double, double>{3, 0.0005}));
  EXPECT_EQ(run.eval.at("perplexity"), (Points{{3, 21.5}}));  // the export row is not an evaluation during training
  EXPECT_TRUE(run.prune.empty());
  EXPECT_EQ(run.quantization["format"], "pack-quantized");
  EXPECT_EQ(run.checkpoints, (std::vector<std::string>{"step_00000003"}));
}

// A row that does not parse is an error naming the file and line, except a last line
// without its newline: the half row a killed run (or a full disk) left, which is skipped.
TEST(RunData, AMalformedRowNamesFileAndLineButATornLastLineIsSkipped) {
  const auto dir = testing::scratch_dir();
  write(dir / "metrics.jsonl", "{\"loss\":1,\"step\":1}\n{\"loss\":2,\"step\":2}\n{\"loss\":1,\"st");
  const auto run = read_run(dir.string());
  EXPECT_EQ(run.train.at("loss"), (Points{{1, 1.0}, {2, 2.0}}));
  write(dir / "metrics.jsonl", "{\"loss\":1,\"step\":1}\n{\"loss\":1,\"st\n{\"loss\":2,\"step\":2}\n");
  try {
    read_run(dir.string());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.line_number(), 2);
    EXPECT_NE(e.file_name().find("metrics.jsonl"), std::string::npos);
  }
  EXPECT_THROW(read_run((dir / "absent").string()), Error);
}

TEST(Report, TableHasTheExactNumbersAndDashesWhereThereAreNone) {
  const auto html = render_report(read_run(hand_written_run().string()));
  const auto teacher = stage_row(html, "teacher");
  EXPECT_EQ(cell(teacher, "model"), "Teacher");
  EXPECT_EQ(cell(teacher, "perplexity"), "12.3457");
  EXPECT_EQ(cell(teacher, "accuracy"), kDash);
  EXPECT_EQ(cell(teacher, "size"), "123456");
  EXPECT_EQ(cell(teacher, "bits"), "32.000");
  EXPECT_EQ(cell(teacher, "tokens-per-second"), "5000.2");  // %.1f of 5000.25 rounds to even
  const auto start = stage_row(html, "start");
  EXPECT_EQ(cell(start, "model"), "PTQ student (before training)");
  EXPECT_EQ(cell(start, "bits"), "4 (simulated)");
  EXPECT_EQ(cell(start, "size"), kDash);
  const auto student = stage_row(html, "student");
  EXPECT_EQ(cell(student, "model"), "QAT+KD student (fake quant)");
  EXPECT_EQ(cell(student, "accuracy"), "0.6250");
  EXPECT_EQ(cell(student, "tokens-per-second"), kDash);
  const auto exported = stage_row(html, "export");
  EXPECT_EQ(cell(exported, "model"), "Exported integer checkpoint");
  EXPECT_EQ(cell(exported, "perplexity"), "21.7500");
  EXPECT_EQ(cell(exported, "size"), "98765");
  EXPECT_EQ(cell(exported, "bits"), "4.500");
  // Plots: every loss term with a non-zero value, lr, grad norm, throughput, perplexity;
  // loss_hidden is zero throughout and left out.
  for (const char* series : {"loss", "loss_ce", "loss_kd", "lr", "grad_norm", "tokens_per_second", "perplexity"})
    EXPECT_NE(html.find(std::string("data-series=\"") + series + "\""), std::string::npos) << series;
  EXPECT_EQ(html.find("data-series=\"loss_hidden\""), std::string::npos);
  EXPECT_NE(html.find("training tokens/s (mean of logged steps)</td><td>" + fmt("%.1f", (100 + 200 + 300) / 3.0)),
            std::string::npos);
  EXPECT_NE(html.find("no pruning in this run"), std::string::npos);
  EXPECT_NE(html.find("data-value=\"1\""), std::string::npos);  // histogram: 2 bins of one linear each
  EXPECT_NE(html.find("<td>model.layers.0.mlp.up_proj</td><td>w4a16-g16</td><td>0.120000</td>"), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("http://"), html.find("http://www.w3.org/2000/svg"));  // nothing fetched
}

TEST(Report, PruningRowsBecomeSparsityAgainstTheStudentsSizes) {
  const auto dir = testing::scratch_dir();
  write(dir / "metrics.jsonl", R"({"kept_mlp_channels":48,"kept_kv_groups":2,"step":0,"kind":"prune"}
{"kept_mlp_channels":32,"kept_kv_groups":1,"step":2,"kind":"prune"}
)");
  write(dir / "results.json", R"({"student_config":{"intermediate_size":64,"num_key_value_heads":2}})");
  const auto html = render_report(read_run(dir.string()));
  EXPECT_NE(html.find("data-series=\"MLP channels pruned\""), std::string::npos);
  EXPECT_NE(html.find("data-series=\"KV groups pruned\""), std::string::npos);
  EXPECT_EQ(html.find("no pruning in this run"), std::string::npos);
  EXPECT_NE(html.find("no results.json"), std::string::npos);
}

// ---- a real run, rendered by headless Chromium ----

std::string browser() {
  for (const char* name : {"chromium", "chromium-browser", "google-chrome"}) {
    const std::string probe = std::string("command -v ") + name + " > /dev/null 2>&1";
    if (std::system(probe.c_str()) == 0) return name;
  }
  return "";
}

int64_t safetensors_bytes(const fs::path& dir) {
  int64_t n = 0;
  for (const auto& item : fs::directory_iterator(dir))
    if (item.path().filename().string().rfind("model", 0) == 0 && item.path().extension() == ".safetensors")
      n += static_cast<int64_t>(fs::file_size(item.path()));
  return n;
}

TEST(ReportInBrowser, QatRunReportRendersWithItsNumbers) {
  const char* no_browser = std::getenv("QTRAIN_NO_BROWSER");
  const auto chromium = browser();
  if (chromium.empty()) {
    if (no_browser && std::string(no_browser) == "1") GTEST_SKIP() << "QTRAIN_NO_BROWSER=1 and no chromium";
    FAIL() << "chromium is not installed: scripts/install-deps.sh installs it (or set QTRAIN_NO_BROWSER=1 to skip)";
  }
  const auto dir = testing::scratch_dir();
  const auto run_dir = dir / "run";
  const auto run = testing::run_tool(
      dir, "qtrain",
      "--config tests/fixtures/train_tiny.yaml --set training.steps=6 --set checkpoint.every_steps=3 "
      "--set \"quant.rules=[lm_head=none, 're:model\\.layers\\..*=w4a16-g16']\" --set run.output_dir=" +
          run_dir.string());
  ASSERT_EQ(run.status, 0) << run.err;
  const auto report = run_dir / "report.html";
  EXPECT_NE(run.out.find("qtrain: report " + report.string()), std::string::npos) << run.out;
  ASSERT_TRUE(fs::exists(report));

  // results.json agrees with what qtrain printed and with the files.
  const auto results = json::parse(testing::read_text(run_dir / "results.json"));
  const auto& stages = results["stages"];
  for (const char* stage : {"teacher", "start", "student", "export"}) ASSERT_TRUE(stages.contains(stage)) << stage;
  EXPECT_NE(run.out.find(fmt("student perplexity %.4f", stages["student"]["perplexity"].get<double>())), std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find(fmt("exported integer checkpoint %.4f", stages["export"]["perplexity"].get<double>())),
            std::string::npos);
  EXPECT_EQ(stages["export"]["size_bytes"].get<int64_t>(), safetensors_bytes(run_dir / "export"));
  EXPECT_NE(run.out.find(fmt("(%.3f bits per weight", stages["export"]["bits_per_weight"].get<double>())), std::string::npos)
      << run.out;
  EXPECT_EQ(stages["teacher"]["size_bytes"].get<int64_t>(), safetensors_bytes(testing::fixture("llama_gqa_llama3")));
  EXPECT_EQ(results["quant_error"].size(), 7u);  // one layer: q, k, v, o, gate, up, down
  double last_eval = 0;
  std::ifstream metrics(run_dir / "metrics.jsonl");
  for (std::string line; std::getline(metrics, line);) {
    const auto row = json::parse(line);
    if (row["kind"] == "eval") last_eval = row["perplexity"];
  }
  EXPECT_EQ(last_eval, stages["student"]["perplexity"].get<double>());

  // The results table as Markdown: in report.md and printed at the end of the run, before the
  // report's path (the last line).
  const std::string export_row = "| Exported integer checkpoint | " + fmt("%.0f", stages["export"]["step"].get<double>()) +
                                 " | " + fmt("%.4f", stages["export"]["perplexity"].get<double>()) + " | ";
  EXPECT_NE(testing::read_text(run_dir / "report.md").find(export_row), std::string::npos)
      << testing::read_text(run_dir / "report.md");
  const auto printed_row = run.out.find(export_row);
  EXPECT_NE(printed_row, std::string::npos) << run.out;
  EXPECT_LT(printed_row, run.out.find("qtrain: report "));

  // The page as Chromium builds it.
  const std::string flags = " --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --user-data-dir='" +
                            (dir / "profile").string() + "' ";
  const auto dom_path = dir / "dom.html";
  const std::string dump = chromium + flags + "--dump-dom 'file://" + report.string() + "' > '" + dom_path.string() +
                           "' 2> '" + (dir / "chromium.err").string() + "'";
  ASSERT_EQ(std::system(dump.c_str()), 0) << testing::read_text(dir / "chromium.err");
  const auto dom = testing::read_text(dom_path);
  size_t charts = 0;
  for (size_t at = dom.find("<svg class=\"chart\""); at != std::string::npos; at = dom.find("<svg class=\"chart\"", at + 1))
    ++charts;
  EXPECT_EQ(charts, 6u) << "loss, lr, grad norm, throughput, validation perplexity, quantization error";
  for (const char* series :
       {"loss", "loss_ce", "loss_kd", "loss_hidden", "lr", "grad_norm", "tokens_per_second", "perplexity"})
    EXPECT_NE(dom.find(std::string("data-series=\"") + series + "\""), std::string::npos) << series;
  EXPECT_NE(dom.find("<polyline points="), std::string::npos);
  EXPECT_NE(dom.find("no pruning in this run"), std::string::npos);
  for (const char* stage : {"teacher", "start", "student", "export"}) {
    const auto row = stage_row(dom, stage);
    const auto& e = stages[stage];
    EXPECT_EQ(cell(row, "perplexity"), fmt("%.4f", e["perplexity"].get<double>())) << stage;
    EXPECT_EQ(cell(row, "accuracy"), kDash) << stage;
  }
  EXPECT_EQ(cell(stage_row(dom, "export"), "size"), std::to_string(safetensors_bytes(run_dir / "export")));
  EXPECT_EQ(cell(stage_row(dom, "export"), "bits"), fmt("%.3f", stages["export"]["bits_per_weight"].get<double>()));
  EXPECT_EQ(cell(stage_row(dom, "start"), "bits"), "4 (simulated)");

  const auto png = dir / "report.png";
  const std::string shot = chromium + flags + "--hide-scrollbars --window-size=1100,2600 --screenshot='" + png.string() +
                           "' 'file://" + report.string() + "' > /dev/null 2>> '" + (dir / "chromium.err").string() + "'";
  ASSERT_EQ(std::system(shot.c_str()), 0) << testing::read_text(dir / "chromium.err");
  const auto bytes = testing::read_text(png);
  ASSERT_GT(bytes.size(), 30000u) << "a blank page compresses to a few KB";
  EXPECT_EQ(bytes.substr(1, 3), "PNG");

  // On demand: qeval --report writes the same page.
  const auto again = testing::run_tool(dir, "qeval", "--report " + run_dir.string() + " --output " + (dir / "again.html").string());
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_EQ(testing::read_text(dir / "again.html"), testing::read_text(report));
  const auto missing = testing::run_tool(dir, "qeval", "--report " + (dir / "absent").string());
  EXPECT_EQ(missing.status, 2);
  EXPECT_NE(missing.err.find("not a run folder"), std::string::npos) << missing.err;
}

}  // namespace
}  // namespace qtrain::eval
