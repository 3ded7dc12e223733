// Corpus file listing and the gzip-transparent reader (zlib's gzread passes plain files
// through unchanged, so one code path serves both).
#include "data/corpus_input.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "common/error.h"

namespace qtrain::data {
namespace fs = std::filesystem;

namespace {
constexpr size_t kBufferBytes = 1 << 20;

int64_t file_size_or_throw(const fs::path& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) throw Error("cannot read the size of a corpus file: " + ec.message()).file(path.string());
  return static_cast<int64_t>(size);
}

void list_folder(const fs::path& folder, std::vector<CorpusFile>& out) {
  std::vector<CorpusFile> found;
  std::error_code ec;
  fs::recursive_directory_iterator it(folder, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    std::error_code entry_ec;
    if (it->is_regular_file(entry_ec)) found.push_back({it->path().string(), file_size_or_throw(it->path())});
  }
  if (ec) throw Error("cannot list the corpus folder: " + ec.message()).file(folder.string());
  std::sort(found.begin(), found.end(), [](const CorpusFile& a, const CorpusFile& b) { return a.path < b.path; });
  out.insert(out.end(), found.begin(), found.end());
}
}  // namespace

std::vector<CorpusFile> list_corpus_files(const std::vector<std::string>& inputs) {
  std::vector<CorpusFile> files;
  for (const auto& input : inputs) {
    std::error_code ec;
    const auto status = fs::status(input, ec);
    if (fs::is_directory(status)) list_folder(input, files);
    else if (fs::is_regular_file(status)) files.push_back({input, file_size_or_throw(input)});
    else if (fs::exists(status)) throw Error("not a regular file or a folder").file(input).key("--input");
    else throw Error("no such file or folder").file(input).key("--input");
  }
  return files;
}

CorpusInput::CorpusInput(std::string path) : path_(std::move(path)) {
  gzFile gz = gzopen(path_.c_str(), "rb");
  if (gz == nullptr) throw Error(std::string("cannot open corpus file: ") + std::strerror(errno)).file(path_);
  gzbuffer(gz, 1 << 17);
  gz_ = gz;
}

CorpusInput::~CorpusInput() {
  if (gz_ != nullptr) gzclose_r(static_cast<gzFile>(gz_));
}

void CorpusInput::refill() {
  if (buffer_.empty()) buffer_.resize(kBufferBytes);  // only line reading needs it
  begin_ = 0;
  end_ = read(buffer_.data(), buffer_.size());
  eof_ = end_ == 0;
}

size_t CorpusInput::read(char* data, size_t size) {
  const int got = gzread(static_cast<gzFile>(gz_), data, static_cast<unsigned>(std::min<size_t>(size, 1u << 30)));
  if (got < 0) {
    const int saved_errno = errno;
    int code = 0;
    std::string message = gzerror(static_cast<gzFile>(gz_), &code);
    if (code == Z_ERRNO) message = std::strerror(saved_errno);
    if (message.rfind(path_ + ": ", 0) == 0) message.erase(0, path_.size() + 2);  // zlib names the file too
    throw Error("cannot read corpus file: " + message)
        .file(path_)
        .expected("a readable plain or gzip file");
  }
  if (got == 0) {
    // At the end zlib returns 0 either way; Z_BUF_ERROR says the file ended inside a gzip
    // stream (a cut download), which must not pass as a shorter document.
    int code = 0;
    gzerror(static_cast<gzFile>(gz_), &code);
    if (code == Z_BUF_ERROR)
      throw Error("gzip data is truncated (the file ends inside a compressed stream)")
          .file(path_)
          .expected("a complete gzip file");
  }
  return static_cast<size_t>(got);
}

std::string CorpusInput::read_all() {
  std::string text(buffer_.data() + begin_, end_ - begin_);
  begin_ = end_ = 0;
  // Appending fixed chunks: growing `text` by resize() would zero a large tail on every
  // call, which costs more than the reading when files are small (most documents are).
  char chunk[1 << 16];
  while (const size_t got = read(chunk, sizeof(chunk))) text.append(chunk, got);
  return text;
}

bool CorpusInput::read_line(std::string& line) {
  line.clear();
  while (true) {
    if (begin_ == end_) {
      if (eof_) return !line.empty();
      refill();
      if (eof_) return !line.empty();
    }
    const char* start = buffer_.data() + begin_;
    const auto* newline = static_cast<const char*>(std::memchr(start, '\n', end_ - begin_));
    if (newline != nullptr) {
      line.append(start, newline);
      begin_ += static_cast<size_t>(newline - start) + 1;
      return true;
    }
    line.append(start, end_ - begin_);
    begin_ = end_;
  }
}

int64_t CorpusInput::disk_offset() const { return gzoffset(static_cast<gzFile>(gz_)); }

}  // namespace qtrain::data
