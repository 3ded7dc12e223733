// QAT in the FP4 and FP8-activation formats end to end: qtrain trains the tiny student of
// train_tiny.yaml with fake quantization (nvfp4, mxfp4, fp8-block, w4afp8 on every linear but
// lm_head), exports it and evaluates the export with the integer evaluator; with the
// unquantized tensors exported in fp32 (quant.export_dtype) the only difference left is the
// one between the simulation and the decoded export, and the two perplexities agree within
// 1e-4 relative (the issue asks for 0.1%). fp8-block and w4afp8 need 128 input columns: their
// student is 128 wide (a random start, as no teacher tensor has its shapes).
#include <gtest/gtest.h>

#include <cstdio>

#include "tests/test_util.h"

namespace qtrain {
namespace {

using testing::run_tool;

struct Fp4Case {
  std::string scheme, overrides;
};

class QtrainFp4 : public ::testing::TestWithParam<Fp4Case> {};

TEST_P(QtrainFp4, TrainedStudentAndItsExportAgree) {
  const auto& c = GetParam();
  const auto dir = testing::scratch_dir();
  const std::string args = "--config tests/fixtures/train_tiny.yaml --set training.steps=4 --set checkpoint.every_steps=4 "
                           "--set \"quant.rules=[lm_head=none, 're:.*=" + c.scheme + "']\" --set quant.export_dtype=fp32 "
                           "--set \"model.student_overrides=[" + c.overrides + "]\" --set run.output_dir=" + (dir / "run").string();
  const auto r = run_tool(dir, "qtrain", args);
  ASSERT_EQ(r.status, 0) << r.err;
  const auto line = r.out.find("fake-quant student ");
  ASSERT_NE(line, std::string::npos) << r.out;
  double student = 0, exported = 0;
  ASSERT_EQ(std::sscanf(r.out.c_str() + line, "fake-quant student %lf, exported integer checkpoint %lf", &student, &exported), 2)
      << r.out.substr(line, 200);
  EXPECT_NEAR(exported, student, 1e-4 * student) << c.scheme;
  EXPECT_NE(r.out.find("bits per weight"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(
    Schemes, QtrainFp4,
    ::testing::Values(Fp4Case{"nvfp4", "num_hidden_layers=1, hidden_size=32, intermediate_size=48"},
                      Fp4Case{"nvfp4a16", "num_hidden_layers=1, hidden_size=32, intermediate_size=48"},
                      Fp4Case{"mxfp4", "num_hidden_layers=1, hidden_size=32, intermediate_size=64"},
                      Fp4Case{"fp8-block", "num_hidden_layers=1, hidden_size=128, intermediate_size=256, head_dim=32"},
                      Fp4Case{"w4afp8", "num_hidden_layers=1, hidden_size=128, intermediate_size=256, head_dim=32"}),
    [](const auto& info) {
      auto n = info.param.scheme;
      std::replace(n.begin(), n.end(), '-', '_');
      return n;
    });

}  // namespace
}  // namespace qtrain
