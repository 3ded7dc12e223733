// Streaming HDF5 token-file writer: extendable chunked datasets, attributes, atomic rename.
#include "data/token_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "common/atomic_file.h"
#include "common/error.h"
#include "data/hdf5.h"
#include "data/token_file.h"

namespace qtrain::data {

namespace {
constexpr hsize_t kChunkTokens = 1 << 20;  // 4 MiB of int32 per chunk
constexpr hsize_t kChunkOffsets = 1 << 16;

hid_t file_type(TokenType t) {
  switch (t) {
    case TokenType::uint16: return H5T_STD_U16LE;
    case TokenType::int32: return H5T_STD_I32LE;
    case TokenType::int64: return H5T_STD_I64LE;
  }
  return H5T_STD_I32LE;
}

H5Handle create_extendable(hid_t file, const char* name, hid_t type, hsize_t chunk, const std::string& path) {
  const hsize_t zero[1] = {0}, unlimited[1] = {H5S_UNLIMITED}, chunk_dims[1] = {chunk};
  H5Handle space(H5_CHECK(H5Screate_simple(1, zero, unlimited), path));
  H5Handle props(H5_CHECK(H5Pcreate(H5P_DATASET_CREATE), path));
  H5_CHECK(H5Pset_chunk(props.get(), 1, chunk_dims), path);
  return H5Handle(H5_CHECK(H5Dcreate2(file, name, type, space.get(), H5P_DEFAULT, props.get(), H5P_DEFAULT), path));
}

void append(hid_t dataset, const std::vector<int64_t>& values, uint64_t& written, const std::string& path) {
  if (values.empty()) return;
  const hsize_t new_size[1] = {written + values.size()};
  H5_CHECK(H5Dset_extent(dataset, new_size), path);
  H5Handle file_space(H5_CHECK(H5Dget_space(dataset), path));
  const hsize_t start[1] = {written}, count[1] = {values.size()};
  H5_CHECK(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, count, nullptr), path);
  H5Handle memory_space(H5_CHECK(H5Screate_simple(1, count, nullptr), path));
  H5_CHECK(H5Dwrite(dataset, H5T_NATIVE_INT64, memory_space.get(), file_space.get(), H5P_DEFAULT, values.data()),
           path);
  written += values.size();
}

void write_attribute(hid_t dataset, const char* name, int64_t value, const std::string& path) {
  H5Handle space(H5_CHECK(H5Screate(H5S_SCALAR), path));
  H5Handle attr(H5_CHECK(H5Acreate2(dataset, name, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), path));
  H5_CHECK(H5Awrite(attr.get(), H5T_NATIVE_INT64, &value), path);
}

void write_attribute(hid_t dataset, const char* name, const std::string& value, const std::string& path) {
  H5Handle space(H5_CHECK(H5Screate(H5S_SCALAR), path));
  H5Handle type(H5_CHECK(H5Tcopy(H5T_C_S1), path));
  H5_CHECK(H5Tset_size(type.get(), value.size()), path);
  H5Handle attr(H5_CHECK(H5Acreate2(dataset, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), path));
  H5_CHECK(H5Awrite(attr.get(), type.get(), value.data()), path);
}
}  // namespace

struct TokenFileWriter::Handles {
  H5Handle file, tokens, offsets;
};

TokenFileWriter::TokenFileWriter(std::string path, TokenFileInfo info)
    : h_(std::make_unique<Handles>()), path_(std::move(path)), info_(std::move(info)) {
  std::lock_guard<std::recursive_mutex> lock(hdf5_mutex());
  silence_hdf5_errors();
  QT_REQUIRE(info_.vocab_size > 0, "token file needs a positive vocab_size");
  if (info_.type == TokenType::uint16 && info_.vocab_size > 65536)
    throw Error("uint16 token files hold vocabularies of at most 65536").file(path_).expected("type int32");
  tmp_path_ = path_ + ".tmp." + std::to_string(::getpid());
  const hid_t file = H5Fcreate(tmp_path_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (file < 0) throw Error("cannot create HDF5 file: " + hdf5_error_message()).file(tmp_path_);
  h_->file = H5Handle(file);
  h_->tokens = create_extendable(file, kInputIdsDataset, file_type(info_.type), kChunkTokens, tmp_path_);
  h_->offsets = create_extendable(file, kDocumentOffsetsDataset, H5T_STD_I64LE, kChunkOffsets, tmp_path_);
  write_attribute(h_->tokens.get(), kVocabSizeAttribute, info_.vocab_size, tmp_path_);
  if (!info_.tokenizer_fingerprint.empty())
    write_attribute(h_->tokens.get(), kTokenizerFingerprintAttribute, info_.tokenizer_fingerprint, tmp_path_);
  pending_offsets_.push_back(0);
}

TokenFileWriter::~TokenFileWriter() {
  if (committed_) return;
  std::lock_guard<std::recursive_mutex> lock(hdf5_mutex());
  h_.reset();
  std::remove(tmp_path_.c_str());
}

void TokenFileWriter::append_document(const int32_t* ids, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    if (ids[i] < 0 || ids[i] >= info_.vocab_size)
      throw Error("token id " + std::to_string(ids[i]) + " outside the vocabulary").file(path_).expected(
          "ids in [0, " + std::to_string(info_.vocab_size) + ")");
    pending_tokens_.push_back(ids[i]);
  }
  tokens_ += count;
  ++documents_;
  pending_offsets_.push_back(tokens_);
  if (pending_tokens_.size() >= kChunkTokens) flush_tokens();
  if (pending_offsets_.size() >= kChunkOffsets) flush_offsets();
}

void TokenFileWriter::flush_tokens() {
  std::lock_guard<std::recursive_mutex> lock(hdf5_mutex());
  append(h_->tokens.get(), pending_tokens_, tokens_written_, tmp_path_);
  pending_tokens_.clear();
}

void TokenFileWriter::flush_offsets() {
  std::lock_guard<std::recursive_mutex> lock(hdf5_mutex());
  append(h_->offsets.get(), pending_offsets_, offsets_written_, tmp_path_);
  pending_offsets_.clear();
}

void TokenFileWriter::commit() {
  std::lock_guard<std::recursive_mutex> lock(hdf5_mutex());
  flush_tokens();
  flush_offsets();
  H5_CHECK(H5Fflush(h_->file.get(), H5F_SCOPE_GLOBAL), tmp_path_);
  h_.reset();  // closes the file
  const int fd = ::open(tmp_path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) throw Error("cannot rename token file into place").file(path_);
  const auto parent = std::filesystem::path(path_).parent_path();
  fsync_directory(parent.empty() ? "." : parent.string());
  committed_ = true;
}

}  // namespace qtrain::data
