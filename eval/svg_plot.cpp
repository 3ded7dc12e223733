// Chart geometry: tick choice (Heckbert's "nice numbers", Graphics Gems 1990), scales, and
// the SVG text of axes, grid, series, bars and legend.
#include "eval/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

namespace qtrain::eval::svg {

namespace {

const char* const kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};
constexpr int kLeft = 72, kRight = 20, kTop = 52, kBottom = 48;

// k * m * 10^e, computed so that decimal ticks are the doubles nearest to their decimal
// values (0.3, not 3 * 0.1).
double decimal(int64_t km, int e) {
  return e >= 0 ? static_cast<double>(km) * std::pow(10.0, e) : static_cast<double>(km) / std::pow(10.0, -e);
}

std::string fmt(const char* format, double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), format, value);
  return buffer;
}

std::string px(double value) { return fmt("%.1f", value); }

struct Frame {
  int width, height;
  double left() const { return kLeft; }
  double right() const { return width - kRight; }
  double top() const { return kTop; }
  double bottom() const { return height - kBottom; }
};

std::string open_svg(const Frame& f, const std::string& title, const std::string& x_label, const std::string& y_label) {
  std::string s = "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(f.width) +
                  "\" height=\"" + std::to_string(f.height) + "\" viewBox=\"0 0 " + std::to_string(f.width) + " " +
                  std::to_string(f.height) + "\" font-family=\"sans-serif\" font-size=\"11\">\n";
  s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s += "<text class=\"title\" x=\"" + px(f.width / 2.0) + "\" y=\"18\" text-anchor=\"middle\" font-size=\"14\" "
       "font-weight=\"bold\">" + escape(title) + "</text>\n";
  s += "<text class=\"x-label\" x=\"" + px((f.left() + f.right()) / 2) + "\" y=\"" + px(f.height - 8.0) +
       "\" text-anchor=\"middle\">" + escape(x_label) + "</text>\n";
  s += "<text class=\"y-label\" transform=\"translate(14," + px((f.top() + f.bottom()) / 2) +
       ") rotate(-90)\" text-anchor=\"middle\">" + escape(y_label) + "</text>\n";
  return s;
}

std::string axes(const Frame& f) {
  return "<path class=\"axes\" d=\"M" + px(f.left()) + " " + px(f.top()) + " V" + px(f.bottom()) + " H" + px(f.right()) +
         "\" fill=\"none\" stroke=\"#333\"/>\n";
}

// Horizontal grid lines and labels at the y ticks.
std::string y_axis(const Frame& f, const Ticks& ticks, const Scale& y, bool log) {
  std::string s;
  for (double v : ticks.values) {
    const double at = y(v);
    s += "<line x1=\"" + px(f.left()) + "\" x2=\"" + px(f.right()) + "\" y1=\"" + px(at) + "\" y2=\"" + px(at) +
         "\" stroke=\"#e4e4e4\"/>\n";
    s += "<text class=\"y-tick\" x=\"" + px(f.left() - 6) + "\" y=\"" + px(at + 4) + "\" text-anchor=\"end\">" +
         tick_label(v, log ? v : ticks.step) + "</text>\n";
  }
  return s;
}

std::string no_data(const Frame& f) {
  return "<text class=\"no-data\" x=\"" + px((f.left() + f.right()) / 2) + "\" y=\"" + px((f.top() + f.bottom()) / 2) +
         "\" text-anchor=\"middle\" fill=\"#888\">no data</text>\n</svg>\n";
}

}  // namespace

Ticks linear_ticks(double data_min, double data_max, int target_intervals) {
  if (!(data_max > data_min)) {  // one value (or none): a range around it
    const double pad = data_min == 0 ? 1.0 : std::abs(data_min) * 0.5;
    data_min -= pad;
    data_max += pad;
  }
  const double raw = (data_max - data_min) / std::max(1, target_intervals);
  const int e = static_cast<int>(std::floor(std::log10(raw)));
  const double norm = raw / std::pow(10.0, e);
  const int64_t m = norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10;
  const double step = decimal(m, e);
  const auto k0 = static_cast<int64_t>(std::floor(data_min / step + 1e-9));
  const auto k1 = static_cast<int64_t>(std::ceil(data_max / step - 1e-9));
  Ticks t;
  t.step = step;
  for (int64_t k = k0; k <= k1; ++k) t.values.push_back(decimal(k * m, e) + 0.0);  // + 0.0: no "-0"
  t.lo = t.values.front();
  t.hi = t.values.back();
  return t;
}

Ticks log_ticks(double data_min, double data_max) {
  const int e0 = static_cast<int>(std::floor(std::log10(data_min) + 1e-12));
  int e1 = static_cast<int>(std::ceil(std::log10(data_max) - 1e-12));
  if (e1 <= e0) e1 = e0 + 1;
  Ticks t;
  t.step = 10;
  const bool fine = e1 - e0 < 2;
  for (int e = e0; e <= e1; ++e)
    for (int64_t m : {1, 2, 5})
      if (m == 1 || (fine && e < e1)) t.values.push_back(decimal(m, e));
  t.lo = t.values.front();
  t.hi = t.values.back();
  return t;
}

double Scale::operator()(double value) const {
  const double a = log ? std::log10(d0) : d0, b = log ? std::log10(d1) : d1;
  const double v = log ? std::log10(value) : value;
  if (b == a) return (r0 + r1) / 2;
  return r0 + (v - a) / (b - a) * (r1 - r0);
}

std::string tick_label(double value, double step) {
  if (value == 0) return "0";
  const double magnitude = std::abs(value);
  if (magnitude >= 1e5 || magnitude < 1e-3) return fmt("%.3g", value);
  const int decimals = std::clamp(static_cast<int>(std::ceil(-std::log10(std::abs(step)) - 1e-9)), 0, 10);
  return fmt(("%." + std::to_string(decimals) + "f").c_str(), value);
}

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string render(const LineChart& chart) {
  const Frame f{chart.width, chart.height};
  std::string s = open_svg(f, chart.title, chart.x_label, chart.y_label);
  double x_min = std::numeric_limits<double>::infinity(), x_max = -x_min, y_min = x_min, y_max = -x_min;
  auto usable = [&](const std::pair<double, double>& p) {
    return std::isfinite(p.first) && std::isfinite(p.second) && (!chart.log_y || p.second > 0);
  };
  for (const auto& series : chart.series)
    for (const auto& p : series.points)
      if (usable(p)) {
        x_min = std::min(x_min, p.first), x_max = std::max(x_max, p.first);
        y_min = std::min(y_min, p.second), y_max = std::max(y_max, p.second);
      }
  if (!std::isfinite(x_min)) return s + axes(f) + no_data(f);
  const Ticks xt = linear_ticks(x_min, x_max, 6);
  const Ticks yt = chart.log_y ? log_ticks(y_min, y_max) : linear_ticks(y_min, y_max, 5);
  const Scale x{xt.lo, xt.hi, f.left(), f.right()};
  const Scale y{yt.lo, yt.hi, f.bottom(), f.top(), chart.log_y};
  s += y_axis(f, yt, y, chart.log_y);
  for (double v : xt.values)
    s += "<text class=\"x-tick\" x=\"" + px(x(v)) + "\" y=\"" + px(f.bottom() + 16) + "\" text-anchor=\"middle\">" +
         tick_label(v, xt.step) + "</text>\n";
  s += axes(f);
  double legend_x = f.left();
  for (size_t i = 0; i < chart.series.size(); ++i) {
    const auto& series = chart.series[i];
    const std::string colour = kPalette[i % (sizeof(kPalette) / sizeof(kPalette[0]))];
    s += "<g class=\"series\" data-series=\"" + escape(series.name) + "\" stroke=\"" + colour + "\" fill=\"none\">";
    s += "<title>" + escape(series.name) + "</title>";
    std::string points;
    int n = 0;
    for (const auto& p : series.points)
      if (usable(p)) points += (n++ ? " " : "") + px(x(p.first)) + "," + px(y(p.second));
    if (n == 1)
      s += "<circle cx=\"" + points.substr(0, points.find(',')) + "\" cy=\"" + points.substr(points.find(',') + 1) +
           "\" r=\"3\" fill=\"" + colour + "\"/>";
    else if (n > 1)
      s += "<polyline points=\"" + points + "\" stroke-width=\"1.5\" stroke-linejoin=\"round\"/>";
    s += "</g>\n";
    s += "<g class=\"legend\"><line x1=\"" + px(legend_x) + "\" x2=\"" + px(legend_x + 18) + "\" y1=\"36\" y2=\"36\" stroke=\"" +
         colour + "\" stroke-width=\"2\"/><text x=\"" + px(legend_x + 22) + "\" y=\"40\">" + escape(series.name) +
         "</text></g>\n";
    legend_x += 34 + 6.5 * static_cast<double>(series.name.size());
  }
  return s + "</svg>\n";
}

std::string render(const BarChart& chart) {
  const Frame f{chart.width, chart.height};
  std::string s = open_svg(f, chart.title, chart.x_label, chart.y_label);
  if (chart.bars.empty()) return s + axes(f) + no_data(f);
  double y_min = 0, y_max = 0;
  for (const auto& bar : chart.bars) y_min = std::min(y_min, bar.value), y_max = std::max(y_max, bar.value);
  const Ticks yt = linear_ticks(y_min, y_max, 5);
  const Scale y{yt.lo, yt.hi, f.bottom(), f.top()};
  s += y_axis(f, yt, y, false);
  const double slot = (f.right() - f.left()) / static_cast<double>(chart.bars.size());
  const size_t label_every = (chart.bars.size() + 11) / 12;  // at most ~12 labels
  for (size_t i = 0; i < chart.bars.size(); ++i) {
    const auto& bar = chart.bars[i];
    const double x0 = f.left() + slot * static_cast<double>(i) + slot * 0.1;
    const double top = y(std::max(bar.value, 0.0)), base = y(std::min(bar.value, 0.0));
    s += "<rect class=\"bar\" data-label=\"" + escape(bar.label) + "\" data-value=\"" + fmt("%.17g", bar.value) +
         "\" x=\"" + px(x0) + "\" y=\"" + px(top) + "\" width=\"" + px(slot * 0.8) + "\" height=\"" + px(base - top) +
         "\" fill=\"#1f77b4\"><title>" + escape(bar.label) + ": " + fmt("%g", bar.value) + "</title></rect>\n";
    if (i % label_every == 0)
      s += "<text class=\"x-tick\" x=\"" + px(x0 + slot * 0.4) + "\" y=\"" + px(f.bottom() + 16) +
           "\" text-anchor=\"middle\">" + escape(bar.label) + "</text>\n";
  }
  return s + axes(f) + "</svg>\n";
}

Histogram histogram(const std::vector<double>& values, int bins) {
  Histogram h;
  if (values.empty() || bins < 1) return h;
  const auto [lo_it, hi_it] = std::minmax_element(values.begin(), values.end());
  double lo = *lo_it, hi = *hi_it;
  if (hi == lo) hi = lo + (lo == 0 ? 1.0 : std::abs(lo) * 1e-3);
  for (int i = 0; i <= bins; ++i) h.edges.push_back(i == bins ? hi : lo + (hi - lo) * i / bins);
  h.counts.assign(static_cast<size_t>(bins), 0);
  for (double v : values) {
    auto bin = static_cast<int64_t>((v - lo) / (hi - lo) * bins);
    ++h.counts[static_cast<size_t>(std::clamp<int64_t>(bin, 0, bins - 1))];
  }
  return h;
}

}  // namespace qtrain::eval::svg
