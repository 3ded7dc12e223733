// A safetensors file (model::SafetensorsFile::open: the u64 header length, the JSON header,
// the data section), then every tensor read in full, as its raw bytes and, where LibTorch
// holds its element type, as a tensor. qtrain::Error is the expected answer to a bad file;
// anything else (another exception, a crash, a read outside the mapping) is a finding.
#include <cstddef>
#include <cstdint>

#include "common/error.h"
#include "fuzz/fuzz_util.h"
#include "model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = qtrain::fuzz::write_file("model.safetensors", data, size);
  try {
    const auto file = qtrain::model::SafetensorsFile::open(path);
    for (const auto& e : file->entries()) {
      (void)file->raw_bytes(e.name).sum().item<int64_t>();
      if (e.dtype->torch_type && *e.dtype->torch_type != torch::kBool)
        (void)file->tensor(e.name).to(torch::kFloat64).sum().item<double>();
    }
  } catch (const qtrain::Error&) {
  }
  return 0;
}
