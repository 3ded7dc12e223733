// Recursive removal of a folder (old checkpoints, scratch space) through POSIX nftw.
// Not std::filesystem::remove_all: PyTorch's wheel exports its own std::filesystem from an
// older libstdc++, and a binary that binds remove_all to it crashes (docs/build.md).
#pragma once
#include <string>

namespace qtrain {

// Removes `path` and everything under it; a missing path is not an error. Symbolic links
// are removed, never followed. Throws qtrain::Error naming the entry that could not go.
void remove_tree(const std::string& path);

}  // namespace qtrain
