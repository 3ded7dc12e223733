// Helpers shared by the fuzz targets: a scratch folder of the process (in /dev/shm when it
// exists, so that the file-based readers cost no disk I/O), and files written into it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace qtrain::fuzz {

// The process's scratch folder, made on first use and removed at exit.
const std::string& scratch_dir();
// Writes `size` bytes to scratch_dir()/name (replacing it) and returns the path.
std::string write_file(const std::string& name, const uint8_t* data, size_t size);
// A file of the source tree (QTRAIN_SOURCE_DIR/relative).
std::string source_path(const std::string& relative);

}  // namespace qtrain::fuzz

namespace qtrain::fuzz {
// QTRAIN_FUZZ_WRITE_SEEDS=DIR: the target writes its seed corpus into DIR (inputs that need
// qtrain's own writers: token files, compressed-tensors exports) and the process exits.
// Returns DIR, or "" when unset.
std::string seed_dir();
// Writes `data` as seed `name` of seed_dir().
void write_seed(const std::string& name, const std::string& data);
}  // namespace qtrain::fuzz
