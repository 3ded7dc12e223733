// A file that only grows, for the run's logs (metrics.jsonl, TensorBoard events): opened
// without following a symbolic link (a link planted in run.output_dir must not send writes
// elsewhere), each record written whole or not at all (a failed write, a full disk, is cut
// back, so no half record stays), and a half line that a killed run left cut off at open.
#pragma once
#include <sys/types.h>

#include <string>

namespace qtrain {

class AppendFile {
 public:
  // Opens `path` for appending, creating it. Throws qtrain::Error naming it when it is a
  // symbolic link or cannot be opened. With `lines` (a text file of records ending in '\n'),
  // a last line without its newline is removed, with a warning on stderr.
  AppendFile(std::string path, bool lines);
  ~AppendFile();
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;

  // Appends `bytes` whole; on failure cuts the file back to its size before the call and
  // throws qtrain::Error naming the file and the system's reason (No space left on device).
  void append(const std::string& bytes);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  off_t size_ = 0;  // what has been written whole
};

}  // namespace qtrain
