// Runs a parser of untrusted bytes in a forked child, so that a crash or a hang inside a
// library we cannot fix (libhdf5 1.10 on forged metadata: fuzz/known-issues) ends as a
// qtrain::Error naming the file instead of killing the job. The child must not use CUDA,
// MPI or LibTorch's thread pools (none survive fork); it only parses and exits.
#pragma once
#include <chrono>
#include <functional>
#include <string>

namespace qtrain {

struct IsolatedOutcome {
  enum class Kind {
    passed,     // body() returned
    error,      // body() threw qtrain::Error: reason, file, key, expected hold its fields
    crashed,      // the child died by a crash signal (SEGV, BUS, ILL, FPE, ABRT) or an exception
    interrupted,  // the child was killed from outside (SIGKILL: the OOM killer; SIGTERM, SIGINT)
    timed_out,    // the child ran past the timeout and was killed
    not_run,    // fork() failed (no memory, no processes left): nothing was checked
  };
  Kind kind = Kind::not_run;
  std::string reason, file, key, expected;  // Kind::error
  std::string detail;                       // crashed, interrupted: the signal; not_run: errno
};

// Calls body() in a child process and waits at most `timeout` for it. The child dumps no
// core, dies with its parent, and tells its outcome through a pipe (so a SIGCHLD that a
// launcher set to be ignored cannot turn a crash into a pass). Callers serialise their
// calls and hold whatever lock keeps the library body() uses consistent across the fork.
IsolatedOutcome run_isolated(const std::function<void()>& body, std::chrono::milliseconds timeout);

}  // namespace qtrain
