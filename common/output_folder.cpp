// Checks of output folders, and whole-folder writes by staging and rename.
#include "common/output_folder.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/atomic_file.h"
#include "common/error.h"
#include "common/paths.h"
#include "common/remove_tree.h"

namespace qtrain {

namespace fs = std::filesystem;

void check_output_folder(const std::string& dir, const std::string& key, const std::vector<std::string>& inputs) {
  if (dir.empty()) throw Error("is empty").key(key).expected("a folder to write into");
  const auto out = resolved(dir);
  for (const char* pseudo : {"/proc", "/sys", "/dev"})
    if (is_within(out, pseudo))
      throw Error("lies in " + std::string(pseudo) + ", a kernel file system").file(dir).key(key).expected(
          "a folder on a disk");
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
  const auto probe = (fs::path(dir) / (".write-probe." + std::to_string(::getpid()))).string();
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    throw Error(std::string("cannot write into the folder: ") + std::strerror(errno)).file(dir).key(key).expected(
        "a writable folder");
  ::close(fd);
  ::unlink(probe.c_str());
}

void write_folder_whole(const std::string& dir, bool writer, const std::function<void(const std::string&)>& write) {
  const std::string staging = dir + ".tmp." + std::to_string(::getpid());
  if (!writer) {
    write(staging);
    return;
  }
  remove_tree(staging);
  try {
    write(staging);
  } catch (...) {
    remove_tree(staging);
    throw;
  }
  const auto aside = dir + ".old." + std::to_string(::getpid());
  const bool replacing = fs::exists(dir);
  if (replacing && std::rename(dir.c_str(), aside.c_str()) != 0)
    throw Error(std::string("cannot move the previous folder aside: ") + std::strerror(errno)).file(dir);
  if (std::rename(staging.c_str(), dir.c_str()) != 0) {
    const int error = errno;
    if (replacing) std::rename(aside.c_str(), dir.c_str());  // put the old one back
    throw Error(std::string("cannot move the written folder into place: ") + std::strerror(error)).file(dir);
  }
  const auto parent = fs::path(dir).parent_path();
  fsync_directory(parent.empty() ? "." : parent.string());
  if (replacing) remove_tree(aside);
}

}  // namespace qtrain
