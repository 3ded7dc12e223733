// safetensors: validating memory-mapped reader and atomic writer.
#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "common/atomic_file.h"
#include "common/compat.h"
#include "common/error.h"
#include "common/json_file.h"

namespace qtrain::model {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the limit of the reference implementation

const std::vector<StDtype>& dtype_table() {
  static const std::vector<StDtype> table = {
      {"F64", 8, torch::kFloat64}, {"F32", 4, torch::kFloat32}, {"F16", 2, torch::kFloat16},
      {"BF16", 2, torch::kBFloat16}, {"I64", 8, torch::kInt64}, {"I32", 4, torch::kInt32},
      {"I16", 2, torch::kInt16}, {"I8", 1, torch::kInt8}, {"U8", 1, torch::kUInt8},
      {"BOOL", 1, torch::kBool},
#if QTRAIN_HAS_FLOAT8
      {"F8_E4M3", 1, torch::kFloat8_e4m3fn}, {"F8_E5M2", 1, torch::kFloat8_e5m2},
#else
      {"F8_E4M3", 1, std::nullopt}, {"F8_E5M2", 1, std::nullopt},
#endif
#if QTRAIN_HAS_WIDE_UINT
      {"U16", 2, torch::kUInt16}, {"U32", 4, torch::kUInt32}, {"U64", 8, torch::kUInt64},
#else
      {"U16", 2, std::nullopt}, {"U32", 4, std::nullopt}, {"U64", 8, std::nullopt},
#endif
  };
  return table;
}

// Multiplies without overflow; returns false if the product exceeds 2^63.
bool checked_mul(uint64_t a, uint64_t b, uint64_t* out) {
  if (a != 0 && b > (uint64_t{1} << 63) / a) return false;
  *out = a * b;
  return true;
}

}  // namespace

const StDtype* find_st_dtype(const std::string& name) {
  for (const auto& d : dtype_table())
    if (name == d.name) return &d;
  return nullptr;
}

const StDtype& st_dtype_for(torch::ScalarType type) {
  for (const auto& d : dtype_table())
    if (d.torch_type && *d.torch_type == type) return d;
  throw Error(std::string("tensor element type ") + c10::toString(type) + " cannot be stored in safetensors");
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->self_ = f;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(std::string("cannot open safetensors file: ") + std::strerror(errno)).file(path);
  struct stat st {};
  ::fstat(fd, &st);
  const auto file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    throw Error("truncated safetensors file: " + std::to_string(file_size) + " bytes, the header length alone needs 8")
        .file(path);
  }
  f->map_ = ::mmap(nullptr, file_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (f->map_ == MAP_FAILED) {
    f->map_ = nullptr;
    throw Error(std::string("cannot map file: ") + std::strerror(errno)).file(path);
  }
  f->map_size_ = file_size;
  uint64_t header_len = 0;
  std::memcpy(&header_len, f->map_, 8);  // little-endian on every platform we build for
  if (header_len > kMaxHeaderBytes || header_len > file_size - 8)
    throw Error("header length " + std::to_string(header_len) + " exceeds the file (" + std::to_string(file_size) +
                " bytes): truncated or not a safetensors file")
        .file(path);
  f->parse_header(header_len);
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, map_size_);
}

void SafetensorsFile::parse_header(uint64_t header_len) {
  const char* text = static_cast<const char*>(map_) + 8;
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text, text + header_len, duplicate_key_guard(path_));  // a name twice: refused
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("malformed JSON header: ") + e.what()).file(path_);
  }
  if (!header.is_object()) throw Error("header is not a JSON object").file(path_);
  data_ = static_cast<const uint8_t*>(map_) + 8 + header_len;
  const uint64_t data_size = map_size_ - 8 - header_len;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const auto& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) throw Error("__metadata__ is not an object").file(path_);
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) throw Error("__metadata__ value is not a string").file(path_).key(m.key());
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    auto bad = [&](const std::string& why) { return Error(why).file(path_).key(name); };
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      throw bad("tensor entry needs dtype, shape and data_offsets");
    TensorEntry e;
    e.name = name;
    if (!v["dtype"].is_string() || !(e.dtype = find_st_dtype(v["dtype"].get<std::string>())))
      throw bad("unknown dtype " + v["dtype"].dump()).expected("F64|F32|F16|BF16|I64|I32|I16|I8|U8|BOOL|F8_E4M3|F8_E5M2|U16|U32|U64");
    uint64_t numel = 1;
    if (!v["shape"].is_array()) throw bad("shape is not an array");
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned()) throw bad("shape holds a value that is not a non-negative integer: " + d.dump());
      if (!checked_mul(numel, d.get<uint64_t>(), &numel)) throw bad("shape overflows");
      e.shape.push_back(d.get<int64_t>());
    }
    const auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw bad("data_offsets must be two non-negative integers");
    e.begin = off[0].get<uint64_t>();
    e.end = off[1].get<uint64_t>();
    uint64_t nbytes = 0;
    if (e.end < e.begin || e.end > data_size)
      throw bad("data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                ") lie outside the data section of " + std::to_string(data_size) + " bytes (truncated file?)");
    if (!checked_mul(numel, e.dtype->element_size, &nbytes) || nbytes != e.end - e.begin)
      throw bad("dtype x shape = " + std::to_string(nbytes) + " bytes but data_offsets span " +
                std::to_string(e.end - e.begin));
    entries_.push_back(std::move(e));
  }
  std::vector<const TensorEntry*> by_offset;
  for (const auto& e : entries_) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
  for (std::size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i]->begin < by_offset[i - 1]->end)
      throw Error("tensors '" + by_offset[i - 1]->name + "' and '" + by_offset[i]->name + "' overlap").file(path_);
  for (std::size_t i = 0; i < entries_.size(); ++i) index_[entries_[i].name] = i;
}

const TensorEntry& SafetensorsFile::entry(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw Error("no tensor named '" + name + "'").file(path_);
  return entries_[it->second];
}

torch::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const auto& e = entry(name);
  if (!e.dtype->torch_type)
    throw Error(std::string("element type ") + e.dtype->name + " needs a newer LibTorch than this build's")
        .file(path_).key(name);
  auto keep = self_.lock();
  void* ptr = const_cast<uint8_t*>(data_ + e.begin);
  return torch::from_blob(ptr, e.shape, [keep](void*) {}, torch::TensorOptions().dtype(*e.dtype->torch_type));
}

torch::Tensor SafetensorsFile::raw_bytes(const std::string& name) const {
  const auto& e = entry(name);
  auto keep = self_.lock();
  void* ptr = const_cast<uint8_t*>(data_ + e.begin);
  return torch::from_blob(ptr, {static_cast<int64_t>(e.end - e.begin)}, [keep](void*) {}, torch::kUInt8);
}

int64_t stored_bytes(const torch::Tensor& t) { return t.numel() * st_dtype_for(t.scalar_type()).element_size; }

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata,
                      const std::map<std::string, std::string>& raw_dtypes) {
  std::vector<std::size_t> order(tensors.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    auto sa = st_dtype_for(tensors[a].second.scalar_type()).element_size;
    auto sb = st_dtype_for(tensors[b].second.scalar_type()).element_size;
    return sa != sb ? sa > sb : tensors[a].first < tensors[b].first;
  });
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (auto i : order) {
    const auto& [name, t] = tensors[i];
    if (header.contains(name)) throw Error("duplicate tensor name '" + name + "'").file(path);
    const auto nbytes = static_cast<uint64_t>(stored_bytes(t));
    std::string dtype = st_dtype_for(t.scalar_type()).name;
    if (const auto raw = raw_dtypes.find(name); raw != raw_dtypes.end()) {
      const auto* declared = find_st_dtype(raw->second);
      TORCH_CHECK(declared && declared->element_size == 1 && t.scalar_type() == torch::kUInt8,
                  "raw dtype override needs uint8 data and a 1-byte element type: ", name);
      dtype = declared->name;
    }
    header[name] = {{"dtype", dtype},
                    {"shape", t.sizes().vec()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // pad so the data section starts 8-aligned
  const uint64_t header_len = text.size();
  AtomicFileWriter out(path);
  out.write(&header_len, 8);
  out.write(text.data(), text.size());
  for (auto i : order) {
    auto t = tensors[i].second.detach().to(torch::kCPU).contiguous();
    out.write(t.data_ptr(), static_cast<std::size_t>(stored_bytes(t)));
  }
  out.commit();
}

}  // namespace qtrain::model
