// Test entry point: MPI is initialised once for the whole suite (the library's
// process-wide communicator), then GoogleTest runs.
#include <gtest/gtest.h>

#include "common/dist.h"

int main(int argc, char** argv) {
  qtrain::dist::Session mpi(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
