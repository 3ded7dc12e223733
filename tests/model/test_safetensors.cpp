// safetensors: round trips of every dtype, zero-copy reads, and a catalogue of corrupt
// files, each rejected with an error that names the file (never a crash).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "common/compat.h"
#include "common/error.h"
#include "model/safetensors.h"
#include "tests/test_util.h"

namespace qtrain::model {
namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

// A file from a header JSON text and a data section, as the format lays them out.
void write_raw(const std::string& path, const std::string& header, const std::string& data, int64_t len = -1) {
  std::ofstream out(path, std::ios::binary);
  uint64_t n = len < 0 ? header.size() : static_cast<uint64_t>(len);
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header << data;
}

TEST(Safetensors, RoundTripsEveryDtype) {
  const auto path = (testing::scratch_dir() / "all.safetensors").string();
  NamedTensors tensors = {
      {"f32", torch::randn({3, 5})},
      {"f16", torch::randn({7}).to(torch::kFloat16)},
      {"bf16", torch::randn({2, 2, 3}).to(torch::kBFloat16)},
      {"f64", torch::randn({4}, torch::kFloat64)},
      {"i64", torch::arange(10, torch::kInt64)},
      {"i32", torch::arange(-5, 5, torch::kInt32)},
      {"i16", torch::arange(-3, 3).to(torch::kInt16)},
      {"i8", torch::arange(-128, 127, 17).to(torch::kInt8)},
      {"u8", torch::arange(0, 255, 5).to(torch::kUInt8)},
      {"bool", torch::tensor({true, false, true})},
      {"scalar", torch::scalar_tensor(3.5)},
      {"empty", torch::empty({0, 4})},
      {"strided", torch::randn({4, 6}).t()},  // non-contiguous input
  };
  save_safetensors(path, tensors, {{"format", "pt"}});
  auto f = SafetensorsFile::open(path);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  ASSERT_EQ(f->entries().size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    auto back = f->tensor(name);
    EXPECT_EQ(back.scalar_type(), t.scalar_type()) << name;
    EXPECT_TRUE(back.equal(t)) << name;
  }
  // Every tensor's data is aligned to its element size within the file.
  for (const auto& e : f->entries()) EXPECT_EQ(e.begin % e.dtype->element_size, 0u) << e.name;
}

TEST(Safetensors, ReadsAreZeroCopyAndWritingThemLeavesTheFileAlone) {
  const auto path = (testing::scratch_dir() / "w.safetensors").string();
  save_safetensors(path, {{"w", torch::ones({1000})}});
  auto f = SafetensorsFile::open(path);
  auto a = f->tensor("w"), b = f->tensor("w");
  EXPECT_EQ(a.data_ptr(), b.data_ptr());  // both views of the one mapping
  a.fill_(7);                             // private mapping: copy-on-write
  auto again = SafetensorsFile::open(path);
  EXPECT_TRUE(again->tensor("w").equal(torch::ones({1000})));
}

TEST(Safetensors, FloatEightAndWideUnsignedNeedNewerLibTorch) {
  const auto path = (testing::scratch_dir() / "f8.safetensors").string();
  write_raw(path, R"({"x":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}})", std::string("\x38\x40\x44\x48", 4));
  auto f = SafetensorsFile::open(path);
  EXPECT_EQ(f->raw_bytes("x").numel(), 4);
#if QTRAIN_HAS_FLOAT8
  EXPECT_EQ(f->tensor("x").to(torch::kFloat32)[0].item<float>(), 1.0f);
#else
  EXPECT_NE(error_of([&] { f->tensor("x"); }).find("needs a newer LibTorch"), std::string::npos);
#endif
}

struct Corruption {
  const char* name;
  std::string header;
  std::string data;
  int64_t declared_len;  // -1: the true header length
  const char* message;   // expected part of the error
};

void PrintTo(const Corruption& c, std::ostream* os) { *os << c.name; }

class SafetensorsCorruption : public ::testing::TestWithParam<Corruption> {};

TEST_P(SafetensorsCorruption, IsRejectedWithTheFileName) {
  const auto& c = GetParam();
  const auto path = (testing::scratch_dir() / "bad.safetensors").string();
  write_raw(path, c.header, c.data, c.declared_len);
  const auto message = error_of([&] { SafetensorsFile::open(path); });
  EXPECT_EQ(message.rfind(path, 0), 0u) << message;
  EXPECT_NE(message.find(c.message), std::string::npos) << message;
}

const std::string k8(8, '\0');
INSTANTIATE_TEST_SUITE_P(
    Catalogue, SafetensorsCorruption,
    ::testing::Values(
        Corruption{"header_longer_than_file", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", k8, 4096,
                   "exceeds the file"},
        Corruption{"header_length_huge", "{}", "", int64_t{1} << 40, "exceeds the file"},
        Corruption{"not_json", "{\"a\": [1, 2", "", -1, "malformed JSON header"},
        Corruption{"not_object", "[1,2,3]", "", -1, "not a JSON object"},
        Corruption{"missing_fields", R"({"a":{"dtype":"F32","shape":[2]}})", k8, -1, "needs dtype, shape and data_offsets"},
        Corruption{"unknown_dtype", R"({"a":{"dtype":"F12","shape":[2],"data_offsets":[0,8]}})", k8, -1, "unknown dtype"},
        Corruption{"negative_dim", R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", k8, -1,
                   "not a non-negative integer"},
        Corruption{"offsets_past_end", R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", k8, -1,
                   "outside the data section"},
        Corruption{"offsets_reversed", R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", k8, -1,
                   "outside the data section"},
        Corruption{"size_mismatch", R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", k8, -1,
                   "dtype x shape = 12 bytes but data_offsets span 8"},
        Corruption{"overlap",
                   R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                   k8, -1, "overlap"},
        Corruption{"shape_overflow", R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})",
                   k8, -1, "shape overflows"},
        // issue 24: the same tensor name twice (JSON duplicate keys; the safetensors spec refuses them)
        Corruption{"duplicate_name",
                   R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                   k8, -1, "occurs twice"},
        Corruption{"metadata_not_string", R"({"__metadata__":{"format":3}})", "", -1, "not a string"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(Safetensors, TruncatedAtEveryByteNeverCrashes) {
  const auto dir = testing::scratch_dir();
  const auto whole = (dir / "whole.safetensors").string();
  save_safetensors(whole, {{"a", torch::randn({16})}, {"b", torch::randn({3, 3})}});
  std::ifstream in(whole, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), {});
  const auto cut = (dir / "cut.safetensors").string();
  for (size_t len = 0; len < bytes.size(); ++len) {
    std::ofstream(cut, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(len));
    EXPECT_NE(error_of([&] { SafetensorsFile::open(cut); }), "<no error>") << "cut at " << len;
  }
}

}  // namespace
}  // namespace qtrain::model
