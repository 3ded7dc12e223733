// Per-layer weight quantization error against a hand derivation: integer weights with 127
// in every row under w8a16 (symmetric int8 per channel). compressed-tensors' symmetric scale
// is max|w| / ((qmax - qmin) / 2) = 127 / 127.5, which bf16 rounds to 255/256; every integer
// |w| <= 127 then quantizes to itself and dequantizes to w * 255/256: the error is w / 256.
#include <gtest/gtest.h>

#include "model/hf_checkpoint.h"
#include "quant/quant_error.h"
#include "quant/quantized_model.h"
#include "tests/test_util.h"

namespace qtrain::quant {
namespace {

TEST(QuantError, MatchesTheHandDerivedResidue) {
  auto m = model::load_causal_lm(testing::fixture("llama_gqa_llama3").string());
  attach_fake_quant(*m, assign_schemes(*m, parse_rules({"re:.*down_proj=w8a16"})), {});
  auto* down = m->named_modules("", false)["model.layers.0.mlp.down_proj"]->as<model::LinearImpl>();
  torch::manual_seed(3);
  auto w = torch::randint(-126, 127, down->weight.sizes()).to(torch::kFloat64);
  w.select(1, 0).fill_(127);
  auto set_weight = [&] {
    torch::NoGradGuard no_grad;
    down->weight.copy_(w);
  };
  set_weight();
  auto errors = weight_quant_errors(*m);
  ASSERT_EQ(errors.size(), 2u);  // both layers' down_proj, by name
  EXPECT_EQ(errors[0].name, "model.layers.0.mlp.down_proj");
  EXPECT_EQ(errors[0].scheme, "w8a16");
  EXPECT_NEAR(errors[0].relative_error, 1.0 / 256, 1e-7);
  EXPECT_GT(errors[1].relative_error, 0.0);
  // One weight off the grid: 3.25 / (255/256) rounds to 3, which dequantizes to 3 * 255/256.
  w[5][7] = 3.25;
  set_weight();
  auto residue = w / 256;
  residue[5][7] = 3.25 - 3 * 255.0 / 256;
  EXPECT_NEAR(weight_quant_errors(*m)[0].relative_error, (residue.norm() / w.norm()).item<double>(), 1e-7);
}

}  // namespace
}  // namespace qtrain::quant
