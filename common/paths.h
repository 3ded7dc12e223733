// Path comparisons for outputs that must stay apart from inputs: paths are compared as
// the file system resolves them (symbolic links, ".", ".."), part by part.
#pragma once
#include <algorithm>
#include <filesystem>
#include <string>
#include <system_error>

namespace qtrain {

// An absolute path with symbolic links and "." / ".." resolved as far as it exists, so that
// "corpus/../corpus/out.h5", "./out.h5" and a path through a link compare equal to what they
// name. Where the file system cannot answer, the path as written, made absolute.
inline std::filesystem::path resolved(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::absolute(path, ec), ec);
  if (ec) p = fs::absolute(path, ec).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();  // "corpus/" names the folder "corpus"
  return p;
}

// Whether `path` is `folder` or lies inside it (whole parts: "corpus.h5" is not in "corpus").
inline bool is_within(const std::filesystem::path& path, const std::filesystem::path& folder) {
  return std::mismatch(folder.begin(), folder.end(), path.begin(), path.end()).first == folder.end();
}

}  // namespace qtrain
