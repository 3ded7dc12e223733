// Helpers shared by the tests: fixture paths and a scratch directory per test.
#pragma once
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

namespace qtrain::testing {

inline std::filesystem::path source_dir() { return QTRAIN_SOURCE_DIR; }
inline std::filesystem::path binary_dir() { return QTRAIN_BINARY_DIR; }
inline std::filesystem::path fixture(const std::string& rel) { return source_dir() / "tests/fixtures" / rel; }

// A fresh empty directory under the build tree, named after the running test.
inline std::filesystem::path scratch_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  auto dir = binary_dir() / "test-scratch" / (std::string(info->test_suite_name()) + "." + info->name());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace qtrain::testing
