// The one place that maps exceptions to exit codes for every front end (qtrain, qeval,
// qdata): bad input (qtrain::Error, bad options) -> status 2 with one line; bugs -> 1.
// It also owns the MPI session, so that a failure on any rank ends the whole job.
#pragma once
#include <functional>

namespace qtrain {

// Starts MPI, runs body() and returns its status. On failure it prints
// "<tool>: error: <message>" (with the rank when there are several) and, under a
// multi-rank launch, aborts every rank with that status instead of letting the others hang.
int run_cli(const char* tool, int* argc, char*** argv, const std::function<int()>& body);

}  // namespace qtrain
