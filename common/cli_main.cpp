// Exception -> exit status mapping shared by the command-line tools.
#include "common/cli_main.h"

#include <boost/program_options/errors.hpp>
#include <c10/util/Exception.h>
#include <cstdio>
#include <exception>
#include <new>

#include "common/error.h"

namespace qtrain {

int run_cli(const char* tool, const std::function<int()>& body) {
  try {
    return body();
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: error: %s\n", tool, e.what());
    return kExitBadInput;
  } catch (const boost::program_options::error& e) {
    std::fprintf(stderr, "%s: error: %s (see %s --help)\n", tool, e.what(), tool);
    return kExitBadInput;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "%s: error: out of host memory\n", tool);
    return 1;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "%s: internal error (LibTorch): %s\n", tool, e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: internal error: %s\n", tool, e.what());
    return 1;
  }
}

}  // namespace qtrain
