// Crash-safe file writes: data goes to a temporary file in the same folder, is fsynced,
// and is renamed over the target; the folder is fsynced too. A reader never sees half a file.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

namespace qtrain {

// Streams bytes into a temporary sibling of `path`; commit() makes it appear atomically.
// Destroying an uncommitted writer removes the temporary file.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, std::size_t size);
  void commit();

 private:
  std::string path_, tmp_path_;
  int fd_ = -1;
};

// Writes a whole small file (JSON, YAML) atomically.
void write_file_atomic(const std::string& path, const std::string& contents);

// fsync on a directory, so that a rename inside it is durable.
void fsync_directory(const std::string& dir);

}  // namespace qtrain
