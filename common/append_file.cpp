// open(O_NOFOLLOW | O_APPEND), write() to the end, ftruncate() back on failure.
#include "common/append_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/error.h"

namespace qtrain {

namespace {

// The length of the file up to and including its last '\n' (0 if it has none).
off_t whole_lines_length(int fd, off_t size) {
  char buffer[4096];
  for (off_t end = size; end > 0;) {
    const off_t begin = end > static_cast<off_t>(sizeof buffer) ? end - static_cast<off_t>(sizeof buffer) : 0;
    const ssize_t n = ::pread(fd, buffer, static_cast<size_t>(end - begin), begin);
    if (n != end - begin) return size;  // unreadable: leave it as it is
    for (ssize_t i = n - 1; i >= 0; --i)
      if (buffer[i] == '\n') return begin + i + 1;
    end = begin;
  }
  return 0;
}

}  // namespace

AppendFile::AppendFile(std::string path, bool lines) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    const int error = errno;
    struct stat link;
    if (error == ELOOP || (::lstat(path_.c_str(), &link) == 0 && S_ISLNK(link.st_mode)))
      throw Error("is a symbolic link; run logs are written only as plain files inside run.output_dir")
          .file(path_)
          .expected("no file or a regular file at this path");
    throw Error(std::string("cannot open for appending: ") + std::strerror(error)).file(path_);
  }
  struct stat st;
  if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd_);
    fd_ = -1;
    throw Error("is not a regular file").file(path_);
  }
  size_ = st.st_size;
  if (!lines || size_ == 0) return;
  const off_t whole = whole_lines_length(fd_, size_);
  if (whole == size_) return;
  if (::ftruncate(fd_, whole) != 0) {
    const int error = errno;
    ::close(fd_);  // the destructor of a half-built object does not run
    fd_ = -1;
    throw Error(std::string("cannot cut off its torn last line: ") + std::strerror(error)).file(path_);
  }
  std::fprintf(stderr, "warning: %s: removed a torn last line of %lld bytes (a run stopped while writing it)\n",
               path_.c_str(), static_cast<long long>(size_ - whole));
  size_ = whole;
}

AppendFile::~AppendFile() {
  if (fd_ >= 0) ::close(fd_);
}

void AppendFile::append(const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int error = n < 0 ? errno : EIO;
      if (::ftruncate(fd_, size_) != 0) {
        // The half record stays; the reader of a lines file skips a torn last line.
      }
      throw Error(std::string("cannot append ") + std::to_string(bytes.size()) + " bytes: " + std::strerror(error))
          .file(path_)
          .expected("space on the device of run.output_dir");
    }
    done += static_cast<size_t>(n);
  }
  size_ += static_cast<off_t>(bytes.size());
}

}  // namespace qtrain
