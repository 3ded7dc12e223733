// A small SVG chart writer for the run report (docs/report.md): line charts (several
// series, linear or log10 y) and bar charts (histograms), with axes, ticks, labels and a
// legend. The output is plain inline SVG: no scripts, no outside styles or fonts.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace qtrain::eval::svg {

// Tick positions on an axis: "nice" steps (1, 2 or 5 x 10^k) for a linear axis, powers of
// ten (or 1-2-5 within them when the range spans less than two decades) for a log axis.
// `lo` and `hi` are the axis ends: the data range widened to whole steps.
struct Ticks {
  double lo = 0, hi = 1, step = 1;
  std::vector<double> values;
};
Ticks linear_ticks(double data_min, double data_max, int target_intervals = 5);
Ticks log_ticks(double data_min, double data_max);  // data_min > 0

// Maps the domain [d0, d1] onto pixels [r0, r1], in log10 when `log` (domain > 0).
struct Scale {
  double d0 = 0, d1 = 1, r0 = 0, r1 = 1;
  bool log = false;
  double operator()(double value) const;
};

// A tick label: as few digits as the tick step needs ("0.25", "1e-05", "3000").
std::string tick_label(double value, double step);
// Text for XML content and attribute values.
std::string escape(const std::string& text);

struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (x, y), x ascending
};

struct LineChart {
  std::string title, x_label, y_label;
  bool log_y = false;  // points with y <= 0 are left out on a log axis
  std::vector<Series> series;
  int width = 640, height = 300;
};

struct Bar {
  std::string label;  // under the bar
  double value = 0;
};

struct BarChart {
  std::string title, x_label, y_label;
  std::vector<Bar> bars;
  int width = 640, height = 300;
};

// <svg> elements: class "chart", each series a <g class="series" data-series="NAME"> holding
// its <polyline> (or <circle> for a single point), each bar a <rect class="bar">.
std::string render(const LineChart& chart);
std::string render(const BarChart& chart);

// Equal-width bins over [min, max] of `values` (all of them counted; the last bin is closed).
struct Histogram {
  std::vector<double> edges;   // bins + 1
  std::vector<int64_t> counts;  // bins
};
Histogram histogram(const std::vector<double>& values, int bins);

}  // namespace qtrain::eval::svg
