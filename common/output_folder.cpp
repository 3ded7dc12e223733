// Checks of output folders, and whole-folder writes by staging and rename.
#include "common/output_folder.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "common/atomic_file.h"
#include "common/error.h"
#include "common/paths.h"
#include "common/remove_tree.h"

namespace qtrain {

namespace fs = std::filesystem;

namespace {

// Kernel file systems: nothing a job writes belongs there (/dev/shm, a real tmpfs, does).
bool in_kernel_file_system(const fs::path& path, std::string* which) {
  if (is_within(path, "/dev/shm")) return false;
  for (const char* pseudo : {"/proc", "/sys", "/dev"})
    if (is_within(path, pseudo)) {
      *which = pseudo;
      return true;
    }
  return false;
}

[[noreturn]] void cannot_write(const std::string& dir, const std::string& key, const std::string& where, int error) {
  throw Error("cannot write into " + where + ": " + std::strerror(error)).file(dir).key(key).expected(
      "a writable place");
}

// Siblings "<name>.tmp.<pid>" and "<name>.old.<pid>" that a crashed writer on this machine left.
void remove_stale_siblings(const fs::path& target) {
  std::error_code ec;
  const auto prefix = target.filename().string();
  for (const auto& entry : fs::directory_iterator(target.parent_path(), ec)) {
    const auto name = entry.path().filename().string();
    for (const char* kind : {".tmp.", ".old."}) {
      const auto head = prefix + kind;
      if (name.rfind(head, 0) != 0) continue;
      const auto pid = std::strtol(name.c_str() + head.size(), nullptr, 10);
      if (pid > 0 && pid != ::getpid() && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)
        remove_tree(entry.path().string());
    }
  }
}

}  // namespace

void check_output_folder(const std::string& dir, const std::string& key, const std::vector<std::string>& inputs) {
  if (dir.empty()) throw Error("is empty").key(key).expected("a folder to write into");
  const auto out = resolved(dir);
  std::string pseudo;
  if (in_kernel_file_system(out, &pseudo))
    throw Error("lies in " + pseudo + ", a kernel file system").file(dir).key(key).expected("a folder on a disk");
  std::error_code ec;
  if (fs::exists(out, ec) && !fs::is_directory(out, ec))
    throw Error("exists and is not a folder").file(dir).key(key).expected("a folder, or a path that does not exist yet");
  for (const auto& input : inputs) {
    if (input.empty()) continue;
    const auto in = resolved(input);
    if (is_within(out, in) || is_within(in, out))
      throw Error(out == in ? "is the input " + input : is_within(out, in) ? "lies inside the input " + input
                                                                          : "holds the input " + input +
                                                                                " (writing the folder would replace it)")
          .file(dir)
          .key(key)
          .expected("a folder apart from every input");
  }
}

void prepare_output_folder(const std::string& dir, const std::string& key, const std::vector<std::string>& inputs) {
  check_output_folder(dir, key, inputs);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error("cannot create the folder: " + ec.message()).file(dir).key(key).expected("a writable place");
  // mkstemp: unique on a shared file system too (ranks of several hosts may share a pid).
  std::string probe = (fs::path(dir) / ".write-probe.XXXXXX").string();
  const int fd = ::mkstemp(probe.data());
  if (fd < 0) cannot_write(dir, key, "the folder", errno);
  ::close(fd);
  ::unlink(probe.c_str());
}

void prepare_export_folder(const std::string& dir, const std::string& key, const std::vector<std::string>& inputs) {
  check_output_folder(dir, key, inputs);
  const auto parent = resolved(dir).parent_path();
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) throw Error("cannot create its parent folder: " + ec.message()).file(dir).key(key).expected("a writable place");
  std::string probe = (parent / (resolved(dir).filename().string() + ".probe.XXXXXX")).string();
  if (!::mkdtemp(probe.data())) cannot_write(dir, key, "its parent folder (the export is staged beside it)", errno);
  ::rmdir(probe.c_str());
}

void write_folder_whole(const std::string& dir, bool writer, const std::function<void(const std::string&)>& write) {
  // The real folder: "out/", "./out" and a link to /scratch/out all name it, and its staging
  // sibling lies on its own file system, where a rename can move it.
  const auto target = resolved(dir);
  const std::string staging = target.string() + ".tmp." + std::to_string(::getpid());
  if (!writer) {
    write(staging);
    return;
  }
  std::error_code ec;
  struct stat here, above;
  if (fs::is_directory(target, ec) && ::stat(target.c_str(), &here) == 0 &&
      ::stat(target.parent_path().c_str(), &above) == 0 && here.st_dev != above.st_dev) {
    write(target.string());  // a mount point (a container's volume) cannot be renamed: in place
    return;
  }
  remove_stale_siblings(target);
  remove_tree(staging);
  try {
    write(staging);
  } catch (...) {
    remove_tree(staging);
    throw;
  }
  const auto aside = target.string() + ".old." + std::to_string(::getpid());
  const bool replacing = fs::exists(target, ec);
  if (replacing && std::rename(target.c_str(), aside.c_str()) != 0) {
    const int error = errno;
    remove_tree(staging);
    throw Error(std::string("cannot move the previous folder aside: ") + std::strerror(error)).file(dir);
  }
  if (std::rename(staging.c_str(), target.c_str()) != 0) {
    const int error = errno;
    remove_tree(staging);
    if (replacing && std::rename(aside.c_str(), target.c_str()) != 0)
      throw Error(std::string("cannot move the written folder into place (") + std::strerror(error) +
                  "), nor the previous one back: it is at " + aside)
          .file(dir);
    throw Error(std::string("cannot move the written folder into place: ") + std::strerror(error)).file(dir);
  }
  try {  // the new folder is in place: what follows only tidies
    fsync_directory(target.parent_path().string());
    if (replacing) remove_tree(aside);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "warning: %s: the export is in place, but %s\n", dir.c_str(), e.what());
  }
}

}  // namespace qtrain
