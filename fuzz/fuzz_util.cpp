#include "fuzz/fuzz_util.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace qtrain::fuzz {

namespace fs = std::filesystem;

namespace {
struct Scratch {
  std::string path;
  Scratch() {
    const fs::path base = fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    path = (base / ("qtrain-fuzz-" + std::to_string(::getpid()))).string();
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};
}  // namespace

const std::string& scratch_dir() {
  static Scratch scratch;
  return scratch.path;
}

std::string write_file(const std::string& name, const uint8_t* data, size_t size) {
  const auto path = (fs::path(scratch_dir()) / name).string();
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

std::string source_path(const std::string& relative) { return (fs::path(QTRAIN_SOURCE_DIR) / relative).string(); }

}  // namespace qtrain::fuzz

namespace qtrain::fuzz {

std::string seed_dir() {
  const char* dir = std::getenv("QTRAIN_FUZZ_WRITE_SEEDS");
  return dir ? dir : "";
}

void write_seed(const std::string& name, const std::string& data) {
  std::filesystem::create_directories(seed_dir());
  std::ofstream out(std::filesystem::path(seed_dir()) / name, std::ios::binary | std::ios::trunc);
  out << data;
}

}  // namespace qtrain::fuzz
