// Reading corpus files for qdata: which files an input names (folders recursed, in sorted
// order so the output does not depend on the file system), and a byte stream over one file
// that gunzips gzip data transparently (detected by its magic bytes, not the name).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace qtrain::data {

struct CorpusFile {
  std::string path;
  int64_t disk_bytes = 0;  // size on disk (compressed, for .gz): what progress is measured in
};

// Every regular file named by `inputs`, each a file or a folder (recursed; symbolic links to
// files are followed, to folders not), folders' files sorted by path. Throws qtrain::Error
// naming an input that does not exist or cannot be listed.
std::vector<CorpusFile> list_corpus_files(const std::vector<std::string>& inputs);

// Sequential reader over one file, plain or gzip (also concatenated gzip members).
class CorpusInput {
 public:
  explicit CorpusInput(std::string path);  // throws qtrain::Error if it cannot be opened
  ~CorpusInput();
  CorpusInput(const CorpusInput&) = delete;
  CorpusInput& operator=(const CorpusInput&) = delete;

  // Up to `size` bytes of (decompressed) text; 0 at the end. Throws on corrupt gzip data.
  size_t read(char* data, size_t size);
  // The rest of the file.
  std::string read_all();
  // Appends the next line without its '\n' to `line` (cleared first); false at the end of the
  // file. A last line without '\n' still counts.
  bool read_line(std::string& line);
  // How far into the file on disk reading has got (compressed bytes for gzip).
  int64_t disk_offset() const;
  const std::string& path() const { return path_; }

 private:
  void refill();
  std::string path_;
  void* gz_ = nullptr;  // gzFile; zlib stays out of this header
  std::vector<char> buffer_;
  size_t begin_ = 0, end_ = 0;
  bool eof_ = false;
};

}  // namespace qtrain::data
