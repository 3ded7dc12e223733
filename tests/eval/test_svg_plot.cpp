// The chart writer's arithmetic with exact values: nice ticks, log ticks, scales, tick
// labels, histogram bins, and the pixel positions of a rendered series.
#include <gtest/gtest.h>

#include "eval/svg_plot.h"

namespace qtrain::eval::svg {
namespace {

TEST(SvgTicks, LinearTicksAreOneTwoFiveTimesAPowerOfTen) {
  const auto unit = linear_ticks(0.13, 0.97);
  EXPECT_EQ(unit.step, 0.2);
  EXPECT_EQ(unit.values, (std::vector<double>{0.0, 0.2, 0.4, 0.6, 0.8, 1.0}));  // decimal doubles, not k * 0.2
  EXPECT_EQ(unit.lo, 0.0);
  EXPECT_EQ(unit.hi, 1.0);
  const auto tens = linear_ticks(3, 47);
  EXPECT_EQ(tens.step, 10.0);
  EXPECT_EQ(tens.values, (std::vector<double>{0, 10, 20, 30, 40, 50}));
  const auto small = linear_ticks(2.5e-4, 3e-3);
  EXPECT_EQ(small.step, 5e-4);
  EXPECT_EQ(small.values.size(), 7u);
  EXPECT_EQ(small.values[2], 0.001);
  EXPECT_EQ(small.values[6], 0.003);
  const auto negative = linear_ticks(-7, 3);
  EXPECT_EQ(negative.step, 2.0);
  EXPECT_EQ(negative.values.front(), -8.0);
  EXPECT_EQ(negative.values.back(), 4.0);
}

TEST(SvgTicks, OneValueGetsARangeAroundIt) {
  const auto t = linear_ticks(4, 4);
  EXPECT_EQ(t.values, (std::vector<double>{2, 3, 4, 5, 6}));
  const auto zero = linear_ticks(0, 0);
  EXPECT_EQ(zero.lo, -1.0);
  EXPECT_EQ(zero.hi, 1.0);
}

TEST(SvgTicks, LogTicksArePowersOfTenOrOneTwoFiveWithinFewDecades) {
  EXPECT_EQ(log_ticks(3, 800).values, (std::vector<double>{1, 10, 100, 1000}));
  EXPECT_EQ(log_ticks(15, 80).values, (std::vector<double>{10, 20, 50, 100}));
  EXPECT_EQ(log_ticks(2e-5, 4e-3).values, (std::vector<double>{1e-5, 1e-4, 1e-3, 1e-2}));
  EXPECT_EQ(log_ticks(10, 10).values, (std::vector<double>{10, 20, 50, 100}));
}

TEST(SvgScale, MapsLinearlyOrInLogTen) {
  EXPECT_EQ((Scale{0, 10, 100, 200}(5)), 150.0);
  EXPECT_EQ((Scale{0, 10, 252, 52}(10)), 52.0);  // y grows upwards
  EXPECT_DOUBLE_EQ((Scale{1, 100, 0, 100, true}(10)), 50.0);
  EXPECT_DOUBLE_EQ((Scale{1, 1000, 0, 300, true}(100)), 200.0);
  EXPECT_EQ((Scale{3, 3, 0, 10}(3)), 5.0);  // empty domain: the middle
}

TEST(SvgLabels, AsManyDigitsAsTheStepNeeds) {
  EXPECT_EQ(tick_label(0.25, 0.05), "0.25");
  EXPECT_EQ(tick_label(2.0, 0.5), "2.0");
  EXPECT_EQ(tick_label(3000, 1000), "3000");
  EXPECT_EQ(tick_label(0, 0.1), "0");
  EXPECT_EQ(tick_label(1e-5, 1e-5), "1e-05");
  EXPECT_EQ(tick_label(2.5e-4, 5e-5), "0.00025");
  EXPECT_EQ(tick_label(123456, 1000), "1.23e+05");
  EXPECT_EQ(escape("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
}

TEST(SvgHistogram, EqualBinsWithTheLastOneClosed) {
  const auto h = histogram({0.0, 0.1, 0.2, 0.4}, 2);
  EXPECT_EQ(h.edges, (std::vector<double>{0.0, 0.2, 0.4}));
  EXPECT_EQ(h.counts, (std::vector<int64_t>{2, 2}));
  const auto same = histogram({0.5, 0.5, 0.5}, 3);
  EXPECT_EQ(same.counts, (std::vector<int64_t>{3, 0, 0}));
  EXPECT_TRUE(histogram({}, 4).counts.empty());
}

TEST(SvgRender, SeriesPointsLandOnTheirPixels) {
  LineChart chart;
  chart.title = "Loss <total>";
  chart.series = {{"loss", {{0, 0}, {10, 1}}}, {"loss_kd", {{5, 0.5}}}};
  const auto svg = render(chart);
  // Frame 640 x 300, margins 72 left, 20 right, 52 top, 48 bottom; x ticks 0..10, y 0..1.
  EXPECT_NE(svg.find("<g class=\"series\" data-series=\"loss\""), std::string::npos);
  EXPECT_NE(svg.find("points=\"72.0,252.0 620.0,52.0\""), std::string::npos) << svg;
  EXPECT_NE(svg.find("<circle cx=\"346.0\" cy=\"152.0\""), std::string::npos) << svg;  // one point: a dot
  EXPECT_NE(svg.find("Loss &lt;total&gt;"), std::string::npos);
  EXPECT_EQ(svg.find("<script"), std::string::npos);
}

TEST(SvgRender, LogAxisLeavesOutNonPositivePointsAndEmptyChartsSaySo) {
  LineChart chart;
  chart.log_y = true;
  chart.series = {{"ppl", {{0, -1}, {1, 10}, {2, 100}}}};
  const auto svg = render(chart);
  EXPECT_NE(svg.find("points=\"72.0,252.0 620.0,52.0\""), std::string::npos) << svg;  // y ticks 10, 20, 50, 100
  chart.series = {{"ppl", {{0, 0}}}};
  EXPECT_NE(render(chart).find("no data"), std::string::npos);
  BarChart bars;
  bars.bars = {{"a", 1}, {"b", 3}};
  const auto b = render(bars);
  EXPECT_NE(b.find("data-label=\"b\" data-value=\"3\""), std::string::npos) << b;
  size_t n = 0;
  for (size_t at = b.find("class=\"bar\""); at != std::string::npos; at = b.find("class=\"bar\"", at + 1)) ++n;
  EXPECT_EQ(n, 2u);
}

}  // namespace
}  // namespace qtrain::eval::svg
