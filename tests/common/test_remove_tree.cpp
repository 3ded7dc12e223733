// remove_tree removes nested folders and files, leaves link targets alone, and accepts a
// missing path.
#include <gtest/gtest.h>

#include <fstream>

#include "common/remove_tree.h"
#include "tests/test_util.h"

namespace qtrain {
namespace {

namespace fs = std::filesystem;

TEST(RemoveTree, RemovesNestedContentButNotLinkTargets) {
  const auto dir = testing::scratch_dir();
  fs::create_directories(dir / "tree/a/b");
  std::ofstream(dir / "tree/a/b/file") << "x";
  std::ofstream(dir / "tree/top") << "y";
  fs::create_directories(dir / "outside");
  std::ofstream(dir / "outside/keep") << "z";
  fs::create_directory_symlink(dir / "outside", dir / "tree/link");
  remove_tree((dir / "tree").string());
  EXPECT_FALSE(fs::exists(dir / "tree"));
  EXPECT_TRUE(fs::exists(dir / "outside/keep"));
  EXPECT_NO_THROW(remove_tree((dir / "tree").string()));  // already gone
  std::ofstream(dir / "plain") << "w";
  remove_tree((dir / "plain").string());  // a file is removed too
  EXPECT_FALSE(fs::exists(dir / "plain"));
}

}  // namespace
}  // namespace qtrain
