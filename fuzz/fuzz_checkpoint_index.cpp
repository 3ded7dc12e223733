// A sharded Hugging Face checkpoint's model.safetensors.index.json, in a folder holding the
// config.json and the 12 shards of tests/fixtures/llama_gqa_llama3: the whole load
// (model::load_causal_lm: index, shard names confined to the folder, headers, names and
// shapes against the model, the copy). qtrain::Error is the expected answer to a bad index.
#include <cstddef>
#include <cstdint>
#include <filesystem>

#include "common/error.h"
#include "fuzz/fuzz_util.h"
#include "model/hf_checkpoint.h"

namespace fs = std::filesystem;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const fs::path dir = fs::path(qtrain::fuzz::scratch_dir()) / "checkpoint";
  fs::create_directories(dir);
  for (const auto& entry : fs::directory_iterator(qtrain::fuzz::source_path("tests/fixtures/llama_gqa_llama3"))) {
    const auto name = entry.path().filename().string();
    if (name == "config.json" || (name.rfind("model-", 0) == 0 && entry.path().extension() == ".safetensors"))
      fs::copy_file(entry.path(), dir / name, fs::copy_options::overwrite_existing);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = qtrain::fuzz::write_file("checkpoint/model.safetensors.index.json", data, size);
  try {
    auto model = qtrain::model::load_causal_lm(fs::path(path).parent_path().string());
    (void)model;
  } catch (const qtrain::Error&) {
  }
  return 0;
}
