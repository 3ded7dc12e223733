// The kernel switches (common/kernels.h): qtrain logs the choice at start and records it in
// results.json; a value other than fused or torch ends the run with exit 2 naming the
// variable, before any work. A model on the CPU (or a build without CUDA) runs no fused
// kernel, so every family reports torch there; on a GPU the families left alone report fused.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/compat.h"
#include "tests/test_util.h"

namespace qtrain {
namespace {

using testing::run_tool;

const std::string kJob = "--config tests/fixtures/train_tiny.yaml --set training.steps=1 --set training.warmup_steps=0 --set logging.progress=off ";

TEST(KernelSwitches, AreLoggedRecordedAndChecked) {
  const auto dir = testing::scratch_dir();
  // On a GPU the families left alone run fused; on the CPU (and in a build without CUDA)
  // nothing is fused.
  const bool cuda = compat::cuda_available();
  const std::string fused = cuda ? "fused" : "torch";
  const auto run = run_tool(dir, "qtrain", kJob + "--set model.device=" + (cuda ? "cuda" : "cpu") +
                                               " --set run.output_dir=" + (dir / "run").string(),
                            "QTRAIN_LOSS_KERNEL=torch QTRAIN_MODEL_KERNELS=fused");
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_NE(run.err.find("qtrain: kernels: model_layers " + fused + ", fake_quant " + fused + ", loss torch"),
            std::string::npos)
      << run.err;
  EXPECT_NE(run.err.find("(QTRAIN_MODEL_KERNELS=fused, QTRAIN_LOSS_KERNEL=torch)"), std::string::npos) << run.err;
  const auto results = nlohmann::json::parse(testing::read_text(dir / "run/results.json"));
  EXPECT_EQ(results["kernels"], (nlohmann::json{{"model_layers", fused}, {"fake_quant", fused}, {"loss", "torch"}}));

  const auto bad = run_tool(dir, "qtrain", kJob + "--set run.output_dir=" + (dir / "bad").string(),
                            "QTRAIN_FAKE_QUANT_KERNEL=triton");
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("key 'QTRAIN_FAKE_QUANT_KERNEL': environment variable QTRAIN_FAKE_QUANT_KERNEL=triton is not "
                         "a kernel choice (expected: fused or torch (or unset: fused))"),
            std::string::npos)
      << bad.err;
  const auto qeval = run_tool(dir, "qeval", "--model tests/fixtures/llama_gqa_llama3 --data tests/fixtures/tokens.h5 "
                                            "--seq-len 32 --max-windows 2 --device cpu --json", "QTRAIN_LOSS_KERNEL=torch");
  ASSERT_EQ(qeval.status, 0) << qeval.err;
  EXPECT_EQ(nlohmann::json::parse(qeval.out)["kernels"]["loss"], "torch");
}

}  // namespace
}  // namespace qtrain
