// The one place that maps exceptions to exit codes for every front end (qtrain, qeval,
// qdata): bad input (qtrain::Error, bad options) -> status 2 with one line; bugs -> 1.
#pragma once
#include <functional>

namespace qtrain {

// Runs body() and returns its status; prints "<tool>: error: <message>" on failure.
int run_cli(const char* tool, const std::function<int()>& body);

}  // namespace qtrain
