// The run report (docs/report.md): one self-contained HTML page for a run folder, with the
// results table (teacher, PTQ, QAT+KD fake-quant student, exported checkpoint) and inline
// SVG plots of the losses, lr, grad norm, throughput, pruning and quantization error. No
// scripts and nothing loaded from elsewhere: it opens from disk in any browser.
#pragma once
#include <string>

#include "eval/run_data.h"

namespace qtrain::eval {

std::string render_report(const RunData& run);
// The results table alone, as Markdown (what a run prints at its end, and report.md).
std::string render_results_markdown(const RunData& run);

// Reads run folder `dir` and writes its report to `output` ("" = <dir>/report.html), and the
// results table as Markdown beside it (the same name, .md); returns the HTML path.
std::string write_report(const std::string& dir, const std::string& output = "");

}  // namespace qtrain::eval
