// The built qtrain on tests/fixtures/train_tiny.yaml with the chunked KD loss
// (distill.loss_chunk_tokens 7: 32 tokens per micro-batch in chunks of 7,7,7,7,4) against
// full logits (0): the same logged loss terms and gradient norms at every step.
//
// Tolerance: on CPU in fp32 the two paths differ per micro-batch only in the order of a few
// fp32 sums (1e-7 relative, tests/distill/test_chunked_logit_loss.cpp); eight AdamW steps
// carry that forward without amplifying it much at lr 3e-3. 1e-5 relative is 100x that and
// far below what a wrong term or gradient does (the losses move by > 1e-3 after one step).
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "tests/test_util.h"

namespace qtrain {
namespace {

namespace fs = std::filesystem;

TEST(QtrainChunkedLoss, ChunkedAndFullLogitsGiveTheSameLosses) {
  const auto dir = testing::scratch_dir();
  const std::string config = "--config tests/fixtures/train_tiny.yaml --set checkpoint.every_steps=8 ";
  const auto full = testing::run_tool(dir, "qtrain", config + "--set distill.loss_chunk_tokens=0 --set run.output_dir=" +
                                                         (dir / "full").string());
  ASSERT_EQ(full.status, 0) << full.err;
  const auto chunked = testing::run_tool(
      dir, "qtrain", config + "--set distill.loss_chunk_tokens=7 --set run.output_dir=" + (dir / "chunked").string());
  ASSERT_EQ(chunked.status, 0) << chunked.err;
  const auto a = testing::step_records(dir / "full"), b = testing::step_records(dir / "chunked");
  ASSERT_EQ(a.size(), 8u);
  ASSERT_EQ(b.size(), 8u);
  double worst = 0;
  for (const auto& [step, record] : a) {
    for (const char* key : {"loss", "loss_ce", "loss_kd", "grad_norm"}) {
      const double x = record[key], y = b.at(step)[key];
      ASSERT_GT(std::abs(x), 0.0) << key;
      worst = std::max(worst, std::abs(x - y) / std::abs(x));
      EXPECT_NEAR(y, x, 1e-5 * std::abs(x)) << key << " at step " << step;
    }
  }
  std::printf("largest relative difference, chunked vs full logits over 8 steps: %.3g\n", worst);
  EXPECT_LT(b.at(8)["loss"].get<double>(), b.at(1)["loss"].get<double>());  // it learns
}

}  // namespace
}  // namespace qtrain
