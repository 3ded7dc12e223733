// AppendFile (common/append_file.h), as metrics.jsonl uses it: a torn last line is cut off at
// open, a symbolic link is refused, and a full disk throws at once leaving whole lines only.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/append_file.h"
#include "common/error.h"
#include "tests/test_util.h"
#include "trainer/metrics_logger.h"

namespace qtrain {
namespace {

namespace fs = std::filesystem;

TEST(AppendFile, ATornLastLineIsCutOffAndAppendingContinuesAfterTheLastWholeOne) {
  const auto dir = testing::scratch_dir();
  const auto path = dir / "metrics.jsonl";
  std::ofstream(path) << "{\"step\":1}\n{\"step\":2}\n{\"step\":3,\"lo";
  {
    trainer::MetricsLogger logger(dir.string(), /*jsonl=*/true, /*tensorboard=*/false);
    logger.log(3, {{"loss", 1.5}});
  }
  EXPECT_EQ(testing::read_text(path), "{\"step\":1}\n{\"step\":2}\n{\"kind\":\"train\",\"loss\":1.5,\"step\":3}\n");
  // Nothing to cut: a file of whole lines, or none at all, is left as it is.
  AppendFile again(path.string(), /*lines=*/true);
  again.append("x\n");
  EXPECT_EQ(testing::read_text(path),
            "{\"step\":1}\n{\"step\":2}\n{\"kind\":\"train\",\"loss\":1.5,\"step\":3}\nx\n");
}

TEST(AppendFile, ASymbolicLinkIsRefusedAndItsTargetUntouched) {
  const auto dir = testing::scratch_dir();
  std::ofstream(dir / "outside.txt") << "keep";
  fs::create_directories(dir / "run");
  fs::create_symlink(dir / "outside.txt", dir / "run/metrics.jsonl");
  try {
    trainer::MetricsLogger logger((dir / "run").string(), true, false);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("metrics.jsonl: is a symbolic link"), std::string::npos) << e.what();
  }
  EXPECT_EQ(testing::read_text(dir / "outside.txt"), "keep");
}

// A tmpfs filled to the last page: the line that does not fit throws an Error naming the file
// and "No space left on device", and the file keeps only the whole lines before it.
TEST(AppendFile, AFullDiskFailsAtOnceAndLeavesNoHalfLine) {
  const auto dir = testing::scratch_dir();
  const auto mnt = dir / "small";
  fs::create_directories(mnt);
  if (std::system(("mount -t tmpfs -o size=64k tmpfs '" + mnt.string() + "' 2>/dev/null").c_str()) != 0)
    GTEST_SKIP() << "cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)";
  struct Unmount {
    fs::path at;
    ~Unmount() { std::system(("umount '" + at.string() + "'").c_str()); }
  } unmount{mnt};
  const std::string line = std::string(999, 'x') + "\n";
  int64_t written = 0;
  try {
    trainer::MetricsLogger logger(mnt.string(), true, false);
    for (int i = 0; i < 1000; ++i) {
      logger.log(i, {{"pad", line.substr(0, 900)}});
      ++written;
    }
    FAIL() << "no error after " << written << " lines";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("metrics.jsonl: cannot append"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("No space left on device"), std::string::npos) << e.what();
  }
  const auto text = testing::read_text(mnt / "metrics.jsonl");
  EXPECT_GT(written, 10);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), written);
  EXPECT_EQ(text.back(), '\n');
}

}  // namespace
}  // namespace qtrain
