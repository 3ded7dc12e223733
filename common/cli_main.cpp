// Exception -> exit status mapping shared by the command-line tools.
#include "common/cli_main.h"

#include <boost/program_options/errors.hpp>
#include <c10/util/Exception.h>
#include <cstdio>
#include <exception>
#include <new>
#include <string>

#include "common/dist.h"
#include "common/error.h"

namespace qtrain {

namespace {

constexpr const char* kOutOfHostMemory = "out of host memory";
constexpr const char* kOutOfHostMemoryAdvice =
    " (expected: a smaller model, micro-batch or sequence, or a machine with more memory)";

// Prints the message, then ends every rank if this is one of several.
int fail(const char* tool, const std::string& kind, const std::string& message, int status) {
  const int world = dist::world_size();
  const std::string where = world > 1 ? " [rank " + std::to_string(dist::rank()) + "]" : "";
  std::fprintf(stderr, "%s: %s: %s%s\n", tool, kind.c_str(), message.c_str(), where.c_str());
  std::fflush(stderr);
  if (world > 1) MPI_Abort(MPI_COMM_WORLD, status);
  return status;
}

}  // namespace

int run_cli(const char* tool, int* argc, char*** argv, const std::function<int()>& body) {
  try {
    dist::Session mpi(argc, argv);
    try {
      return body();
    } catch (const Error& e) {
      return fail(tool, "error", e.what(), kExitBadInput);
    } catch (const boost::program_options::error& e) {
      return fail(tool, "error", std::string(e.what()) + " (see " + tool + " --help)", kExitBadInput);
    } catch (const std::bad_alloc&) {
      return fail(tool, "error", std::string(kOutOfHostMemory) + kOutOfHostMemoryAdvice, kExitBadInput);
    } catch (const c10::Error& e) {
      // LibTorch 1.13's CPU allocator reports a failed allocation as a plain c10::Error: the
      // job asked for more than the host has (a size, a batch), not a bug (issue 25).
      const std::string what = e.what_without_backtrace();
      if (what.find("can't allocate memory") != std::string::npos) {
        const auto asked = what.find("you tried");
        return fail(tool, "error",
                    std::string(kOutOfHostMemory) + (asked == std::string::npos ? "" : "; " + what.substr(asked)) +
                        kOutOfHostMemoryAdvice,
                    kExitBadInput);
      }
      return fail(tool, "internal error (LibTorch)", what, 1);
    } catch (const std::exception& e) {
      return fail(tool, "internal error", e.what(), 1);
    }
  } catch (const std::exception& e) {  // MPI could not start
    std::fprintf(stderr, "%s: error: %s\n", tool, e.what());
    return 1;
  }
}

}  // namespace qtrain
