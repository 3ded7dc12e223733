// nftw-based remove_tree: depth-first, physical walk, so that children go before parents.
#include "common/remove_tree.h"

#include <ftw.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/error.h"

namespace qtrain {

namespace {
thread_local std::string failed_entry;  // nftw's callback cannot carry state otherwise
thread_local int failed_errno = 0;

int remove_entry(const char* path, const struct stat*, int, struct FTW*) {
  if (std::remove(path) == 0 || errno == ENOENT) return 0;
  failed_entry = path;
  failed_errno = errno;
  return 1;  // stop the walk
}
}  // namespace

void remove_tree(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return;
    throw Error(std::string("cannot inspect: ") + std::strerror(errno)).file(path);
  }
  failed_entry.clear();
  if (::nftw(path.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) {
    if (failed_entry.empty()) throw Error(std::string("cannot walk folder: ") + std::strerror(errno)).file(path);
    throw Error(std::string("cannot remove: ") + std::strerror(failed_errno)).file(failed_entry);
  }
}

}  // namespace qtrain
