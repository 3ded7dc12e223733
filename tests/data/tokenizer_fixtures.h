// Fixture access shared by the tokenizer tests (tests/fixtures/tokenizer/README.md).
#pragma once
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "data/hf_tokenizer.h"
#include "data/tokenizer_json.h"
#include "tests/test_util.h"

namespace qtrain::data::test {

using qtrain::testing::fixture;

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

inline void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// Reference ids stored as uint16 little-endian.
inline std::vector<int32_t> read_u16_ids(const std::filesystem::path& path) {
  const std::string bytes = read_file(path);
  std::vector<int32_t> ids(bytes.size() / 2);
  for (size_t i = 0; i < ids.size(); ++i)
    ids[i] = static_cast<uint8_t>(bytes[2 * i]) | (static_cast<uint8_t>(bytes[2 * i + 1]) << 8);
  return ids;
}

// Parsed once per test binary.
inline const nlohmann::json& gpt2_json() {
  static const nlohmann::json json = read_json_file(fixture("tokenizer/gpt2/tokenizer.json").string());
  return json;
}
inline const nlohmann::json& cases_json() {
  static const nlohmann::json json = read_json_file(fixture("tokenizer/cases.json").string());
  return json;
}
inline const std::string& corpus() {
  static const std::string text = read_file(fixture("tokenizer/corpus.txt"));
  return text;
}

inline std::unique_ptr<HfTokenizer> hf_from(const nlohmann::json& json, const std::string& name = "test.json") {
  return std::make_unique<HfTokenizer>(parse_tokenizer_json(json, name), name);
}

// Runs f and returns the qtrain::Error it throws (failing the test if it throws none).
template <class F>
Error error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "no qtrain::Error thrown";
  return Error("none");
}

}  // namespace qtrain::data::test
