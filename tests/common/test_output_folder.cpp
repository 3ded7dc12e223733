// common/output_folder.h: a whole-folder write replaces the folder a path names (with a
// trailing slash, through a symbolic link), leaves the old folder whole when the write
// fails, and tidies a dead writer's leftovers; the checks refuse kernel file systems only.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "common/error.h"
#include "common/output_folder.h"
#include "tests/test_util.h"

namespace qtrain {
namespace {

namespace fs = std::filesystem;

void fill(const std::string& dir, const std::string& file, const std::string& text) {
  fs::create_directories(dir);
  std::ofstream(fs::path(dir) / file) << text;
}

std::vector<std::string> names(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(OutputFolder, AWholeWriteReplacesTheFolderAPathNames) {
  const auto dir = testing::scratch_dir();
  fill((dir / "out").string(), "old-shard", "old");
  write_folder_whole((dir / "out").string() + "/", true, [](const std::string& p) { fill(p, "new", "new"); });
  EXPECT_EQ(names(dir / "out"), std::vector<std::string>{"new"});
  EXPECT_EQ(names(dir), std::vector<std::string>{"out"});
  // Through a link: the folder it points to is replaced, the link stays and leads to it.
  fill((dir / "real").string(), "old-shard", "old");
  fs::create_directory_symlink(dir / "real", dir / "link");
  write_folder_whole((dir / "link").string(), true, [](const std::string& p) { fill(p, "new", "new"); });
  EXPECT_TRUE(fs::is_symlink(dir / "link"));
  EXPECT_EQ(names(dir / "link"), std::vector<std::string>{"new"});
  EXPECT_EQ(names(dir), (std::vector<std::string>{"link", "out", "real"}));
}

TEST(OutputFolder, AFailedWriteLeavesTheOldFolderWholeAndDeadLeftoversGo) {
  const auto dir = testing::scratch_dir();
  fill((dir / "out").string(), "shard", "old");
  fill((dir / "out.tmp.999999999").string(), "half", "x");  // no such process
  EXPECT_THROW(write_folder_whole((dir / "out").string(), true,
                                  [](const std::string& p) {
                                    fill(p, "half", "new");
                                    throw Error("disk full");
                                  }),
               Error);
  EXPECT_EQ(testing::read_text(dir / "out/shard"), "old");
  write_folder_whole((dir / "out").string(), true, [](const std::string& p) { fill(p, "shard", "new"); });
  EXPECT_EQ(testing::read_text(dir / "out/shard"), "new");
  EXPECT_EQ(names(dir), std::vector<std::string>{"out"});
}

TEST(OutputFolder, KernelFileSystemsAreRefusedButDevShmIsNot) {
  EXPECT_THROW(check_output_folder("/proc/x", "--output"), Error);
  EXPECT_THROW(check_output_folder("/sys/kernel/x", "--output"), Error);
  EXPECT_THROW(check_output_folder("/dev/x", "--output"), Error);
  EXPECT_NO_THROW(check_output_folder("/dev/shm/qtrain-export", "--output"));
}

}  // namespace
}  // namespace qtrain
