// The config.json of a compressed-tensors export (its quantization_config: config groups,
// targets, ignore, the quantization args, the KV-cache scheme) read against the tensors of a
// real export: quant::load_for_eval, then a forward of 2 x 8 tokens. The folders are exports
// of tests/fixtures/llama_gqa_llama3 made at start-up (one per scheme below); the input's
// first byte picks the folder, the rest is its config.json. qtrain::Error is the expected
// answer to a config that does not describe the tensors; anything else is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "config/choices.h"
#include "data/token_file.h"
#include "fuzz/fuzz_util.h"
#include "model/hf_checkpoint.h"
#include "quant/export.h"
#include "quant/kv_cache_quant.h"
#include "quant/load_compressed.h"
#include "quant/quantized_model.h"

namespace fs = std::filesystem;
using namespace qtrain;

namespace {

struct Export {
  std::vector<std::string> rules;
  config::KvCache kv;
};
const std::vector<Export>& exports() {
  static const std::vector<Export> list = {
      {{"lm_head=none", "re:.*=w4a16-g32"}, config::KvCache::none},
      {{"lm_head=none", "re:.*mlp\\..*=w4a16-g16", "re:.*self_attn\\..*=w8a8"}, config::KvCache::fp8},
      {{"lm_head=none", "re:.*=w8a8"}, config::KvCache::int8},
      {{"lm_head=none", "re:.*=fp8"}, config::KvCache::none},
      {{"lm_head=none", "re:.*=nvfp4"}, config::KvCache::none},
      {{"lm_head=none", "re:.*mlp\\..*=mxfp4a16", "re:.*self_attn\\..*=w4a16-g32-asym"}, config::KvCache::none}};
  return list;
}

std::string folder(size_t i) { return qtrain::fuzz::scratch_dir() + "/export" + std::to_string(i); }

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  torch::set_num_threads(1);
  const auto tokens = data::TokenFile::open(qtrain::fuzz::source_path("tests/fixtures/tokens.h5"));
  for (size_t i = 0; i < exports().size(); ++i) {
    auto m = model::load_causal_lm(qtrain::fuzz::source_path("tests/fixtures/llama_gqa_llama3"));
    quant::attach_fake_quant(*m, quant::assign_schemes(*m, quant::parse_rules(exports()[i].rules)), {});
    quant::attach_kv_cache_quant(*m, exports()[i].kv);
    quant::calibrate_activations(*m, [&] { m->forward(tokens.read(0, 4 * 64).view({4, 64})); });
    quant::export_compressed_tensors(*m, folder(i), {torch::kBFloat16, ""});
    if (!qtrain::fuzz::seed_dir().empty()) {
      std::ifstream in(folder(i) + "/config.json");
      std::stringstream text;
      text << static_cast<char>(i) << in.rdbuf();
      qtrain::fuzz::write_seed("export" + std::to_string(i) + ".json", text.str());
    }
  }
  if (!qtrain::fuzz::seed_dir().empty()) std::exit(0);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const auto dir = folder(data[0] % exports().size());
  {
    std::ofstream out(dir + "/config.json", std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data + 1), static_cast<std::streamsize>(size - 1));
  }
  try {
    auto m = quant::load_for_eval(dir);
    torch::NoGradGuard no_grad;
    const auto ids = torch::arange(16, torch::kInt64).view({2, 8}) % m->config().vocab_size;
    (void)m->forward(ids).sum().item<double>();
  } catch (const qtrain::Error&) {
  }
  return 0;
}
