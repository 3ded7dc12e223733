// Helpers shared by the qdata tests: documents cut from the tokenizer corpus fixture (kernel
// documentation in five languages plus edge cases), plain and gzip writers, the GPT-2 fixture
// tokenizer, and a token file read back whole (ids, document offsets, attributes).
#pragma once
#include <hdf5.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/token_file.h"
#include "data/token_writer.h"
#include "data/tokenizer.h"
#include "tests/test_util.h"

namespace qtrain::data::qdata_test {

inline const std::string& gpt2_path() {
  static const std::string path = testing::fixture("tokenizer/gpt2/tokenizer.json").string();
  return path;
}

inline const Tokenizer& gpt2() {
  static const auto tokenizer = load_tokenizer(gpt2_path());
  return *tokenizer;
}

// The non-blank paragraphs ("\n\n"-separated) of tests/fixtures/tokenizer/corpus.txt, in order.
inline const std::vector<std::string>& paragraphs() {
  static const std::vector<std::string> result = [] {
    const std::string text = testing::read_text(testing::fixture("tokenizer/corpus.txt"));
    std::vector<std::string> out;
    size_t begin = 0;
    while (begin < text.size()) {
      size_t end = text.find("\n\n", begin);
      if (end == std::string::npos) end = text.size();
      const std::string p = text.substr(begin, end - begin);
      if (p.find_first_not_of(" \n") != std::string::npos) out.push_back(p);
      begin = end + 2;
    }
    return out;
  }();
  return result;
}

inline void write_text(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

inline void write_gz(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::create_directories(path.parent_path());
  gzFile gz = gzopen(path.string().c_str(), "wb");
  ASSERT_NE(gz, nullptr);
  ASSERT_EQ(gzwrite(gz, text.data(), static_cast<unsigned>(text.size())), static_cast<int>(text.size()));
  gzclose(gz);
}

struct TokenFileContents {
  std::vector<int64_t> ids, offsets;
  std::optional<int64_t> vocab_size;
  std::optional<std::string> fingerprint;
  std::string stored_type;
};

inline std::vector<int64_t> read_int64_dataset(const std::string& path, const char* name) {
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  const hid_t dataset = H5Dopen2(file, name, H5P_DEFAULT);
  const hid_t space = H5Dget_space(dataset);
  std::vector<int64_t> values(static_cast<size_t>(H5Sget_simple_extent_npoints(space)));
  if (!values.empty()) H5Dread(dataset, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data());
  H5Sclose(space);
  H5Dclose(dataset);
  H5Fclose(file);
  return values;
}

inline TokenFileContents read_token_file(const std::filesystem::path& path) {
  TokenFileContents c;
  const auto file = TokenFile::open(path.string());
  const auto ids = file.read(0, file.size());
  c.ids.assign(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + ids.numel());
  c.offsets = read_int64_dataset(path.string(), kDocumentOffsetsDataset);
  c.vocab_size = file.vocab_size();
  c.fingerprint = file.tokenizer_fingerprint();
  c.stored_type = file.stored_type();
  return c;
}

// What a token file of `documents` must hold: encode() of each, then `eos` when given.
inline TokenFileContents expected_contents(const std::vector<std::string>& documents, std::optional<int32_t> eos) {
  TokenFileContents c;
  c.offsets.push_back(0);
  for (const auto& d : documents) {
    for (const int32_t id : gpt2().encode(d)) c.ids.push_back(id);
    if (eos) c.ids.push_back(*eos);
    c.offsets.push_back(static_cast<int64_t>(c.ids.size()));
  }
  return c;
}

}  // namespace qtrain::data::qdata_test
