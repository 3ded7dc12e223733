// Token files: what the writer stores the reader returns, for every accepted element
// type, and every malformed file is rejected with an error naming it.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <fstream>

#include "common/error.h"
#include "data/token_file.h"
#include "data/token_writer.h"
#include "tests/test_util.h"

namespace qtrain::data {
namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

class TokenFileTypes : public ::testing::TestWithParam<TokenType> {};

TEST_P(TokenFileTypes, WriterAndReaderAgree) {
  const auto path = (testing::scratch_dir() / "tokens.h5").string();
  std::vector<std::vector<int32_t>> documents = {{5, 1, 999}, {}, {0, 7, 7, 7, 65535 % 1000}};
  std::vector<int64_t> all;
  {
    TokenFileWriter writer(path, {1000, "sha256:abc", GetParam()});
    for (const auto& d : documents) {
      writer.append_document(d);
      all.insert(all.end(), d.begin(), d.end());
    }
    EXPECT_EQ(writer.documents(), 3);
    writer.commit();
  }
  auto file = TokenFile::open(path);
  EXPECT_EQ(file.size(), static_cast<int64_t>(all.size()));
  EXPECT_EQ(file.vocab_size(), 1000);
  EXPECT_EQ(file.tokenizer_fingerprint(), "sha256:abc");
  auto ids = file.read(0, file.size());
  EXPECT_TRUE(ids.equal(torch::tensor(all, torch::kInt64)));
  EXPECT_TRUE(file.read(4, 3).equal(torch::tensor(std::vector<int64_t>{7, 7, 7}, torch::kInt64)));
  EXPECT_EQ(file.read(2, 0).numel(), 0);
}

INSTANTIATE_TEST_SUITE_P(All, TokenFileTypes, ::testing::Values(TokenType::uint16, TokenType::int32, TokenType::int64));

TEST(TokenFile, ReadsTheCommittedFixture) {
  // tests/fixtures/tokens.h5 was written by h5py (make_fixtures.py): int32, no attributes.
  auto file = TokenFile::open(testing::fixture("tokens.h5").string());
  EXPECT_EQ(file.size(), 64 * 24 + 13);
  EXPECT_EQ(file.stored_type(), "int32");
  EXPECT_FALSE(file.vocab_size().has_value());
  EXPECT_EQ(file.read(0, 1).item<int64_t>(), static_cast<unsigned char>('"'));
}

TEST(TokenFile, UncommittedWriterLeavesNoFile) {
  const auto dir = testing::scratch_dir();
  {
    TokenFileWriter writer((dir / "t.h5").string(), {10, "", TokenType::int32});
    writer.append_document({1, 2});
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir));
}

TEST(TokenFile, WriterRejectsIdsOutsideTheVocabulary) {
  const auto path = (testing::scratch_dir() / "t.h5").string();
  TokenFileWriter writer(path, {10, "", TokenType::int32});
  EXPECT_NE(error_of([&] { writer.append_document({3, 10}); }).find("token id 10 outside the vocabulary"),
            std::string::npos);
}

TEST(TokenFile, RangeCheckNamesPositionAndValue) {
  auto ids = torch::tensor(std::vector<int64_t>{1, 2, 300, 4}, torch::kInt64);
  EXPECT_EQ(error_of([&] { check_token_range(ids, 256, "f.h5", 100); }),
            "f.h5: key 'input_ids': token id 300 at position 102 is outside the model's vocabulary "
            "(expected: ids in [0, 256))");
  EXPECT_EQ(error_of([&] { check_token_range(ids, 301, "f.h5", 0); }), "<no error>");
}

// Writes an HDF5 file with one dataset of the given type and dims, by hand.
void write_raw(const std::string& path, const char* name, hid_t type, std::vector<hsize_t> dims) {
  hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  hid_t dataset = H5Dcreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dclose(dataset);
  H5Sclose(space);
  H5Fclose(file);
}

// A dataset that declares absurd dimensions without the data behind them: 10^13 int32
// tokens in chunks of 1024, none written (a file of a few KB), or only the first chunk. Both
// are refused at open, at once, instead of reading 10^13 zeros.
TEST(TokenFile, DeclaredTokensWithoutWrittenDataAreRefused) {
  const auto dir = testing::scratch_dir();
  for (const bool first_chunk : {false, true}) {
    const auto path = (dir / (first_chunk ? "part.h5" : "none.h5")).string();
    hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[1] = {10000000000000ULL}, chunk[1] = {1024};
    hid_t space = H5Screate_simple(1, dims, nullptr);
    hid_t plist = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(plist, 1, chunk);
    hid_t dataset = H5Dcreate2(file, "input_ids", H5T_STD_I32LE, space, H5P_DEFAULT, plist, H5P_DEFAULT);
    if (first_chunk) {
      std::vector<int32_t> ids(1024, 7);
      hsize_t start[1] = {0};
      hid_t memory = H5Screate_simple(1, chunk, nullptr);
      H5Sselect_hyperslab(space, H5S_SELECT_SET, start, nullptr, chunk, nullptr);
      H5Dwrite(dataset, H5T_NATIVE_INT32, memory, space, H5P_DEFAULT, ids.data());
      H5Sclose(memory);
    }
    H5Dclose(dataset);
    H5Pclose(plist);
    H5Sclose(space);
    H5Fclose(file);
    EXPECT_LT(std::filesystem::file_size(path), 100000u);
    const auto message = error_of([&] { TokenFile::open(path); });
    EXPECT_NE(message.find("declares 10000000000000 tokens, but " + std::string(first_chunk ? "only part" : "none") +
                           " of its storage was written"),
              std::string::npos)
        << message;
    EXPECT_NE(message.find("key 'input_ids'"), std::string::npos) << message;
  }
}

TEST(TokenFile, MalformedFilesAreRejectedWithTheirName) {
  const auto dir = testing::scratch_dir();
  const auto p = [&](const char* name) { return (dir / name).string(); };
  EXPECT_EQ(error_of([&] { TokenFile::open(p("missing.h5")); }), p("missing.h5") + ": token file not found");
  std::ofstream(p("text.h5")) << "not hdf5 at all";
  EXPECT_NE(error_of([&] { TokenFile::open(p("text.h5")); }).find("not an HDF5 file"), std::string::npos);
  write_raw(p("no_ids.h5"), "tokens", H5T_STD_I32LE, {10});
  EXPECT_NE(error_of([&] { TokenFile::open(p("no_ids.h5")); }).find("key 'input_ids': no dataset"), std::string::npos);
  write_raw(p("two_d.h5"), "input_ids", H5T_STD_I32LE, {2, 5});
  EXPECT_NE(error_of([&] { TokenFile::open(p("two_d.h5")); }).find("dataset is not 1-D"), std::string::npos);
  write_raw(p("float.h5"), "input_ids", H5T_IEEE_F32LE, {10});
  EXPECT_NE(error_of([&] { TokenFile::open(p("float.h5")); }).find("unsupported element type"), std::string::npos);
  write_raw(p("uint32.h5"), "input_ids", H5T_STD_U32LE, {10});
  EXPECT_NE(error_of([&] { TokenFile::open(p("uint32.h5")); }).find("expected: int32, uint16 or int64"),
            std::string::npos);
  // A token file cut short: the superblock survives, the data do not.
  {
    TokenFileWriter writer(p("whole.h5"), {1000, "", TokenType::int32});
    writer.append_document(std::vector<int32_t>(100000, 3));
    writer.commit();
  }
  std::filesystem::copy_file(p("whole.h5"), p("cut.h5"));
  std::filesystem::resize_file(p("cut.h5"), std::filesystem::file_size(p("whole.h5")) / 2);
  const auto cut = error_of([&] {
    auto f = TokenFile::open(p("cut.h5"));
    f.read(0, f.size());
  });
  EXPECT_NE(cut.find(p("cut.h5")), std::string::npos) << cut;
}

// Forged metadata on which libhdf5 1.10.8 itself crashes (a copy into NULL inside H5Lexists;
// found by fuzz/fuzz_token_file.cpp): the open parses in a child first, so this process
// gets an Error naming the file, not SIGSEGV.
TEST(TokenFile, MetadataThatCrashesTheHdf5LibraryIsAnErrorNamingTheFile) {
  const auto path = (testing::source_dir() / "fuzz/regressions/token_file/hdf5-null-memcpy.h5").string();
  const auto message = error_of([&] { TokenFile::open(path); });
  EXPECT_EQ(message.rfind(path + ": ", 0), 0u) << message;
  // libhdf5 1.10.8 (Debian 12) crashes on it; a libhdf5 that refuses it instead is as good.
  if (message.find("crashed") != std::string::npos)
    EXPECT_NE(message.find("the HDF5 library crashed reading the file (signal "), std::string::npos) << message;
  // The file the child survived is the one this process then reads.
  auto file = TokenFile::open(testing::fixture("tokens.h5").string());
  EXPECT_EQ(file.size(), 64 * 24 + 13);
}

}  // namespace
}  // namespace qtrain::data
