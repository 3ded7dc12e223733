// `qtrain quantize`, the one-shot path from a Hugging Face folder to an exported
// compressed-tensors folder (as llm-compressor's oneshot): every method on the scheme it
// serves writes the layout vLLM reads, the perplexity it prints is the exported folder's
// (qeval agrees) and stays near the unquantized model's transformers reference, and on CUDA
// (the GPU machine) it gives the CPU's integers and perplexity.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>

#include "model/safetensors.h"
#include "tests/test_util.h"

namespace qtrain {
namespace {

namespace fs = std::filesystem;
using testing::run_tool;

struct QuantizeCase {
  std::string scheme, method, format;
  double max_relative_change;  // of perplexity against the fp32 model (transformers' reference)
};

std::string quantize_args(const QuantizeCase& c, const fs::path& out, const std::string& device) {
  return "quantize --model tests/fixtures/llama_gqa_llama3 --scheme " + c.scheme + " --method " + c.method +
         " --calib tests/fixtures/tokens.h5 --seq-len 64 --calibration-sequences 8 --output '" + out.string() +
         "' --eval tests/fixtures/tokens.h5 --eval-seq-len 64 --device " + device;
}

double printed_perplexity(const std::string& out) {
  std::smatch m;
  if (!std::regex_search(out, m, std::regex("perplexity ([0-9.]+)"))) return -1;
  return std::stod(m[1]);
}

double reference_perplexity() {
  return nlohmann::json::parse(testing::read_text(testing::fixture("llama_gqa_llama3/reference.json")))["perplexity"]
      .get<double>();
}

class QtrainQuantize : public ::testing::TestWithParam<QuantizeCase> {};

TEST_P(QtrainQuantize, ExportsTheCompressedTensorsLayoutAndItsPerplexity) {
  const auto& c = GetParam();
  const auto dir = testing::scratch_dir();
  const auto run = run_tool(dir, "qtrain", quantize_args(c, dir / "export", "cpu"));
  ASSERT_EQ(run.status, 0) << run.err;
  const auto config = nlohmann::json::parse(testing::read_text(dir / "export/config.json"));
  const auto& qc = config["quantization_config"];
  EXPECT_EQ(qc["quant_method"], "compressed-tensors");
  EXPECT_EQ(qc["format"], c.format);
  EXPECT_EQ(qc["ignore"], nlohmann::json::array({"lm_head"}));
  EXPECT_TRUE(fs::exists(dir / "export/generation_config.json"));  // the source folder's files come through

  const double printed = printed_perplexity(run.out);
  ASSERT_GT(printed, 0) << run.out;
  const auto eval = run_tool(dir, "qeval", "--model '" + (dir / "export").string() +
                                               "' --data tests/fixtures/tokens.h5 --seq-len 64 --device cpu --json");
  ASSERT_EQ(eval.status, 0) << eval.err;
  EXPECT_NEAR(nlohmann::json::parse(eval.out)["perplexity"].get<double>(), printed, 1e-3 * printed);
  const double reference = reference_perplexity();
  EXPECT_LT(std::abs(printed / reference - 1), c.max_relative_change) << printed << " vs fp32 " << reference;
  EXPECT_NE(printed, reference);  // something was quantized
}

// The GPU machine: the same job on CUDA gives the CPU's integers (up to a few elements that
// sit on a rounding tie under other float summation orders) and the CPU's perplexity.
TEST_P(QtrainQuantize, OnCudaGivesTheCpuResult) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const auto& c = GetParam();
  const auto dir = testing::scratch_dir();
  const auto cpu = run_tool(dir, "qtrain", quantize_args(c, dir / "cpu", "cpu"));
  ASSERT_EQ(cpu.status, 0) << cpu.err;
  const auto gpu = run_tool(dir, "qtrain", quantize_args(c, dir / "cuda", "cuda") + " --dtype fp32");
  ASSERT_EQ(gpu.status, 0) << gpu.err;
  EXPECT_NEAR(printed_perplexity(gpu.out), printed_perplexity(cpu.out), 5e-3 * printed_perplexity(cpu.out));
  const auto a = model::SafetensorsFile::open((dir / "cpu/model.safetensors").string());
  const auto b = model::SafetensorsFile::open((dir / "cuda/model.safetensors").string());
  for (const auto& entry : a->entries()) {
    const auto x = a->tensor(entry.name), y = b->tensor(entry.name);
    if (x.scalar_type() != torch::kInt8 && x.scalar_type() != torch::kInt32 && x.scalar_type() != torch::kUInt8) continue;
    const double differing = x.ne(y).sum().item<double>() / static_cast<double>(x.numel());
    EXPECT_LT(differing, 0.01) << entry.name;
  }
}

INSTANTIATE_TEST_SUITE_P(Methods, QtrainQuantize,
                         ::testing::Values(QuantizeCase{"w4a16-g32", "rtn", "pack-quantized", 0.05},
                                           QuantizeCase{"w4a16-g32", "gptq", "pack-quantized", 0.05},
                                           QuantizeCase{"w4a16-g32", "awq", "pack-quantized", 0.05},
                                           QuantizeCase{"w8a8", "rtn", "int-quantized", 0.02},
                                           QuantizeCase{"w8a8", "smoothquant", "int-quantized", 0.02},
                                           // FP4 on this random model (measured: +3.3%, +1.9%, +5.6%, +1.0%, +5.2%)
                                           QuantizeCase{"nvfp4a16", "rtn", "nvfp4-pack-quantized", 0.05},
                                           QuantizeCase{"nvfp4a16", "gptq", "nvfp4-pack-quantized", 0.03},
                                           QuantizeCase{"nvfp4", "rtn", "nvfp4-pack-quantized", 0.07},
                                           QuantizeCase{"mxfp4a16", "gptq", "mxfp4-pack-quantized", 0.03},
                                           QuantizeCase{"mxfp4", "rtn", "mxfp4-pack-quantized", 0.07}),
                         [](const auto& info) {
                           auto name = info.param.scheme + "_" + info.param.method;
                           for (auto& ch : name)
                             if (ch == '-') ch = '_';
                           return name;
                         });

// --kv-cache fp8: the export carries the KV-cache scheme and a calibrated K and V scale per
// attention (as quant.kv_cache writes them), and its perplexity is the W4 one's give or take
// the FP8 rounding of keys and values; a bad value exits with status 2 naming the option.
TEST(QtrainQuantizeKvCache, Fp8KvCacheIsCalibratedAndExported) {
  const auto dir = testing::scratch_dir();
  const QuantizeCase c{"w4a16-g32", "rtn", "pack-quantized", 0.05};
  const auto w4 = run_tool(dir, "qtrain", quantize_args(c, dir / "w4", "cpu"));
  ASSERT_EQ(w4.status, 0) << w4.err;
  const auto kv = run_tool(dir, "qtrain", quantize_args(c, dir / "kv", "cpu") + " --kv-cache fp8");
  ASSERT_EQ(kv.status, 0) << kv.err;
  const auto config = nlohmann::json::parse(testing::read_text(dir / "kv" / "config.json"));
  const auto& scheme = config["quantization_config"]["kv_cache_scheme"];
  ASSERT_TRUE(scheme.is_object()) << config.dump(2);
  EXPECT_EQ(scheme["type"], "float");
  EXPECT_EQ(scheme["num_bits"], 8);
  const auto file = model::SafetensorsFile::open((dir / "kv" / "model.safetensors").string());
  for (int layer = 0; layer < 2; ++layer)
    for (const char* name : {"k_scale", "v_scale"}) {
      const auto key = "model.layers." + std::to_string(layer) + ".self_attn." + name;
      ASSERT_TRUE(file->contains(key)) << key;
      EXPECT_GT(file->tensor(key).to(torch::kFloat32).item<float>(), 0.0f) << key;
    }
  const double p4 = printed_perplexity(w4.out), pkv = printed_perplexity(kv.out);
  EXPECT_NE(pkv, p4);
  EXPECT_NEAR(pkv, p4, 0.02 * p4);
  const auto bad = run_tool(dir, "qtrain", quantize_args(c, dir / "bad", "cpu") + " --kv-cache fp4");
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("--kv-cache"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace qtrain
