// HDF5 token-file reader: layout validation at open, hyperslab reads of ranges.
#include "data/token_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <set>
#include <tuple>
#include <vector>

#include "common/isolated_call.h"

#include "data/hdf5.h"

namespace qtrain::data {

struct TokenFile::Handles {
  H5Handle file, dataset;
  hid_t memory_type = H5T_NATIVE_INT64;
};

namespace {

// Tokens the isolated check reads at each end of the file (a few chunks of qdata's files
// are decompressed, the rest of the chunk index is walked by the open).
constexpr int64_t kCheckedTokens = 1 << 16;

// A file as this process checked it: device, inode, size, modification and change times,
// and a hash of its first and last 64 KiB (a file rewritten in place within one clock tick
// of the same size, as a fuzzer rewrites its input, still differs there).
using FileIdentity = std::tuple<uint64_t, uint64_t, int64_t, int64_t, int64_t, size_t>;

std::optional<FileIdentity> identity_of(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  struct stat st;
  std::string sample(size_t{2} << 16, '\0');
  bool ok = ::fstat(fd, &st) == 0;
  if (ok) {
    const off_t half = static_cast<off_t>(sample.size() / 2);
    const ssize_t head = ::pread(fd, sample.data(), static_cast<size_t>(half), 0);
    const ssize_t tail = ::pread(fd, sample.data() + half, static_cast<size_t>(half), std::max<off_t>(0, st.st_size - half));
    ok = head >= 0 && tail >= 0;
    sample.resize(ok ? static_cast<size_t>(head) + static_cast<size_t>(half) : 0);
  }
  ::close(fd);
  if (!ok) return std::nullopt;
  const auto ns = [](const timespec& t) { return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec; };
  return FileIdentity{st.st_dev, st.st_ino, st.st_size, ns(st.st_mtim), ns(st.st_ctim), std::hash<std::string>{}(sample)};
}

// The files that passed the isolated check in this process (under hdf5_mutex): each is
// checked once, at its first open (early in start-up, before the big allocations and the
// communicators that make a fork costly), not again by the prefetch thread or an evaluation.
std::set<FileIdentity>& checked_files() {
  static std::set<FileIdentity> files;
  return files;
}

// The stored integer type's name, or "" if it is not one we accept.
std::string classify(hid_t type) {
  if (H5Tget_class(type) != H5T_INTEGER) return "";
  const auto size = H5Tget_size(type);
  const bool is_signed = H5Tget_sign(type) == H5T_SGN_2;
  if (is_signed && size == 4) return "int32";
  if (is_signed && size == 8) return "int64";
  if (!is_signed && size == 2) return "uint16";
  return "";
}

std::optional<H5Handle> open_attribute(hid_t dataset, const char* name, const std::string& path) {
  if (H5_CHECK(H5Aexists(dataset, name), path) <= 0) return std::nullopt;
  return H5Handle(H5_CHECK(H5Aopen(dataset, name, H5P_DEFAULT), path));
}

std::optional<int64_t> read_int_attribute(hid_t dataset, const char* name, const std::string& path) {
  auto attr = open_attribute(dataset, name, path);
  if (!attr) return std::nullopt;
  H5Handle type(H5_CHECK(H5Aget_type(attr->get()), path));
  if (H5Tget_class(type.get()) != H5T_INTEGER)
    throw Error("attribute is not an integer").file(path).key(std::string(kInputIdsDataset) + "@" + name);
  int64_t value = 0;
  H5_CHECK(H5Aread(attr->get(), H5T_NATIVE_INT64, &value), path);
  return value;
}

std::optional<std::string> read_string_attribute(hid_t dataset, const char* name, const std::string& path) {
  auto attr = open_attribute(dataset, name, path);
  if (!attr) return std::nullopt;
  H5Handle type(H5_CHECK(H5Aget_type(attr->get()), path));
  const std::string key = std::string(kInputIdsDataset) + "@" + name;
  if (H5Tget_class(type.get()) != H5T_STRING) throw Error("attribute is not a string").file(path).key(key);
  if (H5Tis_variable_str(type.get()) > 0) {
    char* text = nullptr;
    H5Handle memory_type(H5_CHECK(H5Tget_native_type(type.get(), H5T_DIR_ASCEND), path));
    H5_CHECK(H5Aread(attr->get(), memory_type.get(), &text), path);
    std::string value = text ? text : "";
    H5free_memory(text);
    return value;
  }
  std::string value(H5Tget_size(type.get()), '\0');
  H5_CHECK(H5Aread(attr->get(), type.get(), value.data()), path);
  value.resize(value.find('\0') == std::string::npos ? value.size() : value.find('\0'));
  return value;
}

}  // namespace

TokenFile::~TokenFile() {
  std::lock_guard<std::recursive_mutex> lock(hdf5_mutex());
  h_.reset();
}
TokenFile::TokenFile(TokenFile&&) noexcept = default;
TokenFile& TokenFile::operator=(TokenFile&& other) noexcept {
  std::lock_guard<std::recursive_mutex> lock(hdf5_mutex());
  h_ = std::move(other.h_);
  path_ = std::move(other.path_);
  stored_type_ = std::move(other.stored_type_);
  size_ = other.size_;
  vocab_size_ = other.vocab_size_;
  fingerprint_ = std::move(other.fingerprint_);
  return *this;
}

TokenFile TokenFile::open(const std::string& path, std::chrono::milliseconds check_timeout) {
  // Held across the fork, so that no other thread is inside libhdf5 when the child's copy
  // of it starts (the child is this thread, and the mutex is recursive).
  std::lock_guard<std::recursive_mutex> lock(hdf5_mutex());
  if (!std::filesystem::is_regular_file(path)) throw Error("token file not found").file(path);
  const auto key = identity_of(path);
  if (key && checked_files().count(*key)) return open_in_process(path);
  const auto outcome = run_isolated(
      [&] {
        reinitialize_hdf5_mutex_in_child();
        const auto file = open_in_process(path);
        std::vector<int64_t> ids(static_cast<size_t>(std::min<int64_t>(file.size(), kCheckedTokens)));
        const auto n = static_cast<int64_t>(ids.size());
        file.read_into(0, n, ids.data());
        file.read_into(file.size() - n, n, ids.data());
      },
      check_timeout);
  using Kind = IsolatedOutcome::Kind;
  const std::string expected = "a token file written by qdata (docs/formats.md)";
  switch (outcome.kind) {
    case Kind::passed:
      if (key) checked_files().insert(*key);
      break;
    case Kind::error: {
      Error e(outcome.reason);
      if (!outcome.file.empty()) e.file(outcome.file);
      if (!outcome.key.empty()) e.key(outcome.key);
      if (!outcome.expected.empty()) e.expected(outcome.expected);
      throw e;
    }
    case Kind::crashed:
      throw Error("the HDF5 library crashed reading the file (" + outcome.detail +
                  "): its metadata is damaged or forged")
          .file(path)
          .expected(expected);
    case Kind::interrupted:
      throw Error("checking the file in a child process was interrupted (" + outcome.detail +
                  "; killed from outside, or out of memory)")
          .file(path)
          .expected(expected);
    case Kind::timed_out:
      throw Error("reading the file's HDF5 metadata did not end within " + std::to_string(check_timeout.count()) +
                  " ms (a damaged or forged file)")
          .file(path)
          .expected(expected);
    case Kind::not_run:  // no process to spare: the file is read unchecked, as before
      std::fprintf(stderr, "warning: %s: could not check the token file in a child process (%s)\n", path.c_str(),
                   outcome.detail.c_str());
      break;
  }
  return open_in_process(path);
}

TokenFile TokenFile::open_in_process(const std::string& path) {
  std::lock_guard<std::recursive_mutex> lock(hdf5_mutex());
  silence_hdf5_errors();
  if (!std::filesystem::is_regular_file(path)) throw Error("token file not found").file(path);
  if (H5Fis_hdf5(path.c_str()) <= 0)
    throw Error("not an HDF5 file (or a truncated one)").file(path).expected("an HDF5 token file (docs/formats.md)");
  TokenFile f;
  f.path_ = path;
  f.h_ = std::make_unique<Handles>();
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file < 0) throw Error("cannot open HDF5 file: " + hdf5_error_message()).file(path);
  f.h_->file = H5Handle(file);
  if (H5Lexists(file, kInputIdsDataset, H5P_DEFAULT) <= 0)
    throw Error("no dataset").file(path).key(kInputIdsDataset).expected("a 1-D integer dataset 'input_ids'");
  f.h_->dataset = H5Handle(H5_CHECK(H5Dopen2(file, kInputIdsDataset, H5P_DEFAULT), path));
  H5Handle space(H5_CHECK(H5Dget_space(f.h_->dataset.get()), path));
  if (H5Sget_simple_extent_ndims(space.get()) != 1)
    throw Error("dataset is not 1-D").file(path).key(kInputIdsDataset).expected("shape [num_tokens]");
  hsize_t dims[1] = {0};
  H5_CHECK(H5Sget_simple_extent_dims(space.get(), dims, nullptr), path);
  f.size_ = static_cast<int64_t>(dims[0]);
  H5Handle type(H5_CHECK(H5Dget_type(f.h_->dataset.get()), path));
  f.stored_type_ = classify(type.get());
  if (f.stored_type_.empty())
    throw Error("unsupported element type").file(path).key(kInputIdsDataset).expected("int32, uint16 or int64");
  // A declared size must be backed by written data: an unfinished or forged file can declare
  // 10^13 tokens in a few bytes (unwritten chunks read as zeros), which a job would then read
  // for days. Chunked (qdata's, compressed): every chunk of the extent is written; contiguous:
  // the storage holds every element.
  if (f.size_ > 0) {
    H5Handle plist(H5_CHECK(H5Dget_create_plist(f.h_->dataset.get()), path));
    uint64_t written = 0, needed = 0;
    if (H5Pget_layout(plist.get()) == H5D_CHUNKED) {
      hsize_t chunk[1] = {0};
      H5_CHECK(H5Pget_chunk(plist.get(), 1, chunk), path);
      hsize_t chunks = 0;
      H5_CHECK(H5Dget_num_chunks(f.h_->dataset.get(), space.get(), &chunks), path);
      written = chunks;
      needed = (static_cast<uint64_t>(f.size_) + chunk[0] - 1) / chunk[0];
    } else {
      written = H5Dget_storage_size(f.h_->dataset.get());
      needed = static_cast<uint64_t>(f.size_) * H5Tget_size(type.get());
    }
    if (written < needed)
      throw Error("the dataset declares " + std::to_string(f.size_) + " tokens, but " +
                  (written > 0 ? std::string("only part") : std::string("none")) +
                  " of its storage was written (an unfinished or damaged token file)")
          .file(path)
          .key(kInputIdsDataset)
          .expected("a token file written to the end (qdata)");
  }
  f.vocab_size_ = read_int_attribute(f.h_->dataset.get(), kVocabSizeAttribute, path);
  f.fingerprint_ = read_string_attribute(f.h_->dataset.get(), kTokenizerFingerprintAttribute, path);
  return f;
}

torch::Tensor TokenFile::read(int64_t begin, int64_t count) const {
  TORCH_CHECK(begin >= 0 && count >= 0 && begin + count <= size_, "token range out of bounds");
  auto out = torch::empty({count}, torch::kInt64);
  read_into(begin, count, out.data_ptr<int64_t>());
  return out;
}

void TokenFile::read_into(int64_t begin, int64_t count, int64_t* out) const {
  if (count == 0) return;
  std::lock_guard<std::recursive_mutex> lock(hdf5_mutex());
  H5Handle file_space(H5_CHECK(H5Dget_space(h_->dataset.get()), path_));
  const hsize_t start[1] = {static_cast<hsize_t>(begin)}, extent[1] = {static_cast<hsize_t>(count)};
  H5_CHECK(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, extent, nullptr), path_);
  H5Handle memory_space(H5_CHECK(H5Screate_simple(1, extent, nullptr), path_));
  // HDF5 converts the stored integer type to int64 while reading.
  H5_CHECK(H5Dread(h_->dataset.get(), H5T_NATIVE_INT64, memory_space.get(), file_space.get(), H5P_DEFAULT, out),
           path_);
}

void check_vocabulary(const TokenFile& file, int64_t vocab_size) {
  if (vocab_size > 0 && file.vocab_size() && *file.vocab_size() > vocab_size)
    throw Error("token file vocabulary (" + std::to_string(*file.vocab_size()) + ") is larger than the model's")
        .file(file.path())
        .key(kVocabSizeAttribute)
        .expected("<= " + std::to_string(vocab_size));
}

void check_token_range(const torch::Tensor& ids, int64_t vocab_size, const std::string& path, int64_t offset) {
  const auto bad = (ids < 0).logical_or(ids >= vocab_size);
  if (!bad.any().item<bool>()) return;
  const auto index = bad.flatten().nonzero()[0].item<int64_t>();
  const auto value = ids.flatten()[index].item<int64_t>();
  throw Error("token id " + std::to_string(value) + " at position " + std::to_string(offset + index) +
              " is outside the model's vocabulary")
      .file(path)
      .key(kInputIdsDataset)
      .expected("ids in [0, " + std::to_string(vocab_size) + ")");
}

}  // namespace qtrain::data
