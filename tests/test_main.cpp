// Test entry point. The suite runs as a plain process without MPI (the library treats an
// uninitialised MPI as one rank); multi-rank behaviour is tested by starting the built
// tools under mpirun (tests/test_util.h), which keeps each test process fast to start.
#include <gtest/gtest.h>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
