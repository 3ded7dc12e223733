// fork() + a pipe for the child's error + poll() against the deadline + waitpid.
#include "common/isolated_call.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "common/error.h"

namespace qtrain {

namespace {

// The child's exit statuses: 0 is body() returning; these two are the only others it uses.
constexpr int kChildError = 2, kChildOtherException = 3;

void write_all(int fd, const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

// Fields as "<length>:<bytes>" one after another (any byte may occur in a message).
std::string encode(const std::vector<std::string>& fields) {
  std::string out;
  for (const auto& f : fields) out += std::to_string(f.size()) + ":" + f;
  return out;
}

std::vector<std::string> decode(const std::string& bytes) {
  std::vector<std::string> fields;
  size_t at = 0;
  while (at < bytes.size()) {
    const auto colon = bytes.find(':', at);
    if (colon == std::string::npos) break;
    size_t length = 0;
    try {
      length = std::stoul(bytes.substr(at, colon - at));
    } catch (const std::exception&) {
      break;
    }
    if (colon + 1 + length > bytes.size()) break;
    fields.push_back(bytes.substr(colon + 1, length));
    at = colon + 1 + length;
  }
  return fields;
}

[[noreturn]] void child_main(const std::function<void()>& body, int out) {
  // The parent's stdout/stderr stay clean: a library's own messages (or a sanitizer's report
  // of the crash we are isolating) go nowhere.
  const int null = ::open("/dev/null", O_WRONLY);
  if (null >= 0) {
    ::dup2(null, STDOUT_FILENO);
    ::dup2(null, STDERR_FILENO);
  }
  // A crash ends the child by its signal: handlers copied from the parent (a sanitizer's, a
  // fuzzer's, one that writes a crash report) would run in it as if the parent had crashed.
  for (const int sig : {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL, SIGTERM, SIGINT})
    ::signal(sig, SIG_DFL);
  int status = 0;
  try {
    body();
  } catch (const Error& e) {
    write_all(out, encode({e.reason(), e.file_name(), e.key_name(), e.expected_value()}));
    status = kChildError;
  } catch (const std::exception& e) {
    write_all(out, encode({e.what()}));
    status = kChildOtherException;
  } catch (...) {
    status = kChildOtherException;
  }
  ::_exit(status);  // no atexit handlers, no flush of buffers copied from the parent
}

}  // namespace

IsolatedOutcome run_isolated(const std::function<void()>& body, std::chrono::milliseconds timeout) {
  IsolatedOutcome outcome;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    outcome.detail = std::strerror(errno);
    return outcome;
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    outcome.detail = std::strerror(errno);
    ::close(fds[0]);
    ::close(fds[1]);
    return outcome;
  }
  if (pid == 0) {
    ::close(fds[0]);
    child_main(body, fds[1]);
  }
  ::close(fds[1]);
  std::string message;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool timed_out = false;
  while (true) {  // read until the child closes its end (it exits) or the deadline passes
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 1 << 30)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;  // re-check the deadline
    char buffer[4096];
    const ssize_t n = ::read(fds[0], buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    message.append(buffer, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    outcome.kind = IsolatedOutcome::Kind::timed_out;
    return outcome;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    outcome.kind = IsolatedOutcome::Kind::passed;
  } else if (WIFEXITED(status) && WEXITSTATUS(status) == kChildError) {
    const auto fields = decode(message);
    outcome.kind = IsolatedOutcome::Kind::error;
    if (fields.size() == 4) {
      outcome.reason = fields[0];
      outcome.file = fields[1];
      outcome.key = fields[2];
      outcome.expected = fields[3];
    } else {
      outcome.reason = "an error the child could not report";
    }
  } else {
    outcome.kind = IsolatedOutcome::Kind::crashed;
    if (WIFSIGNALED(status)) {
      outcome.detail = std::string("signal ") + std::to_string(WTERMSIG(status)) + ", " + ::strsignal(WTERMSIG(status));
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == kChildOtherException) {
      const auto fields = decode(message);
      outcome.detail = "an exception: " + (fields.empty() ? std::string("unknown") : fields[0]);
    } else {
      outcome.detail = "exit status " + std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
  }
  return outcome;
}

}  // namespace qtrain
