// A token file (data::TokenFile::open: HDF5, the input_ids dataset and its attributes), then
// its first and last 256 tokens read and checked against the vocab_size it declares.
// qtrain::Error is the expected answer to a bad file; anything else is a finding (the HDF5
// library itself is not instrumented, but a crash or an overrun in it is still seen: in the
// parent, where a file the child survived is parsed again).
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "data/hdf5.h"
#include "data/token_file.h"
#include "fuzz/fuzz_util.h"

namespace {

// A small token file: 70 ids in `type`, contiguous or in chunks of 16 (deflated), with
// the vocab_size and tokenizer_fingerprint attributes when given (qdata's layout, but a few
// KB: qdata's chunks of a million tokens would make seeds of megabytes).
std::string seed_file(const std::string& name, hid_t type, bool chunked, int64_t vocab, const std::string& fingerprint) {
  using qtrain::data::H5Handle;
  const auto path = qtrain::fuzz::scratch_dir() + "/" + name;
  H5Handle file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
  std::vector<int64_t> ids;
  for (int i = 0; i < 70; ++i) ids.push_back((i * 37) % 300);
  hsize_t dims[1] = {ids.size()};
  H5Handle space(H5Screate_simple(1, dims, nullptr));
  H5Handle plist(H5Pcreate(H5P_DATASET_CREATE));
  if (chunked) {
    hsize_t chunk[1] = {16};
    H5Pset_chunk(plist.get(), 1, chunk);
    H5Pset_deflate(plist.get(), 1);
  }
  H5Handle dataset(H5Dcreate2(file.get(), qtrain::data::kInputIdsDataset, type, space.get(), H5P_DEFAULT, plist.get(),
                              H5P_DEFAULT));
  H5Dwrite(dataset.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, ids.data());
  if (vocab > 0) {
    H5Handle scalar(H5Screate(H5S_SCALAR));
    H5Handle attr(H5Acreate2(dataset.get(), qtrain::data::kVocabSizeAttribute, H5T_STD_I64LE, scalar.get(), H5P_DEFAULT,
                             H5P_DEFAULT));
    H5Awrite(attr.get(), H5T_NATIVE_INT64, &vocab);
  }
  if (!fingerprint.empty()) {
    H5Handle scalar(H5Screate(H5S_SCALAR));
    H5Handle text(H5Tcopy(H5T_C_S1));
    H5Tset_size(text.get(), fingerprint.size());
    H5Handle attr(H5Acreate2(dataset.get(), qtrain::data::kTokenizerFingerprintAttribute, text.get(), scalar.get(),
                             H5P_DEFAULT, H5P_DEFAULT));
    H5Awrite(attr.get(), text.get(), fingerprint.data());
  }
  return path;
}

}  // namespace

// QTRAIN_FUZZ_WRITE_SEEDS: contiguous and chunked files of each stored type, with and
// without the attributes.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (qtrain::fuzz::seed_dir().empty()) return 0;
  std::lock_guard<std::recursive_mutex> lock(qtrain::data::hdf5_mutex());
  const struct { const char* name; hid_t type; bool chunked; int64_t vocab; const char* fingerprint; } seeds[] = {
      {"int32_attributes.h5", H5T_STD_I32LE, false, 300, "xxh3-128:0123456789abcdef0123456789abcdef"},
      {"uint16_chunked.h5", H5T_STD_U16LE, true, 300, ""},
      {"int64.h5", H5T_STD_I64LE, false, 0, ""}};
  for (const auto& s : seeds) {
    const auto path = seed_file(s.name, s.type, s.chunked, s.vocab, s.fingerprint);
    std::ifstream in(path, std::ios::binary);
    std::stringstream bytes;
    bytes << in.rdbuf();
    qtrain::fuzz::write_seed(s.name, bytes.str());
  }
  std::exit(0);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = qtrain::fuzz::write_file("tokens.h5", data, size);
  try {
    // The product's open: parsed first in a forked child (a libhdf5 crash or hang there is
    // an Error; the child's own coverage is not seen), then here. 5 s: within -timeout=10.
    const auto file = qtrain::data::TokenFile::open(path, std::chrono::seconds(5));
    const int64_t n = std::min<int64_t>(file.size(), 256);
    const auto head = file.read(0, n);
    const auto tail = file.read(file.size() - n, n);
    if (file.vocab_size()) {
      qtrain::data::check_token_range(head, *file.vocab_size(), path, 0);
      qtrain::data::check_token_range(tail, *file.vocab_size(), path, file.size() - n);
    }
  } catch (const qtrain::Error&) {
  }
  return 0;
}
