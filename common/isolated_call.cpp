// fork() + a pipe for the child's error + poll() against the deadline + waitpid.
#include "common/isolated_call.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include <cerrno>
#include <cstring>
#include <vector>

#include "common/error.h"

namespace qtrain {

namespace {

// The child's exit statuses: 0 is body() returning; these two are the only others it uses.
constexpr int kChildError = 2, kChildOtherException = 3;
// What the child writes before exiting 0: a pass is only a pass with it.
constexpr char kPassed[] = "passed";

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

[[noreturn]] void child_main(const std::function<void()>& body, int out, pid_t parent) {
  // Dies with the parent (a watchdog's exit, mpirun's kill): a hung child must not outlive
  // the job holding its sockets. And dumps no core: its address space is the parent's model.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(1);
  const rlimit no_core{0, 0};
  ::setrlimit(RLIMIT_CORE, &no_core);
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
    write_all(out, kPassed);
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
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    outcome.detail = std::strerror(errno);
    ::close(fds[0]);
    ::close(fds[1]);
    return outcome;
  }
  if (pid == 0) {
    ::close(fds[0]);
    child_main(body, fds[1], parent);
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
    if (ready < 0 && errno != EINTR) break;  // the pipe is unusable: judge by the exit status
    if (ready <= 0) continue;                // re-check the deadline
    char buffer[4096];
    const ssize_t n = ::read(fds[0], buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    message.append(buffer, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  // A child that ended its work is reaped (it is exiting). One killed at the timeout gets a
  // grace period: stuck in the kernel (a hung NFS read) it may not die even of SIGKILL, and
  // the caller must not wait for it for ever (it stays a zombie).
  int status = 0;
  bool reaped = false;
  for (int i = 0; !reaped && (!timed_out || i < 1000); ++i) {
    const pid_t done = ::waitpid(pid, &status, timed_out ? WNOHANG : 0);
    if (done == pid) reaped = true;
    else if (done < 0 && errno != EINTR) break;  // reaped elsewhere (SIGCHLD ignored): the pipe tells
    else if (timed_out) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (timed_out) {
    outcome.kind = IsolatedOutcome::Kind::timed_out;
    return outcome;
  }
  // The pipe first: it holds the outcome even when the exit status could not be read.
  const auto fields = decode(message);
  if (message == kPassed) {
    outcome.kind = IsolatedOutcome::Kind::passed;
  } else if (fields.size() == 4) {
    outcome.kind = IsolatedOutcome::Kind::error;
    outcome.reason = fields[0];
    outcome.file = fields[1];
    outcome.key = fields[2];
    outcome.expected = fields[3];
  } else if (!reaped) {
    outcome.kind = IsolatedOutcome::Kind::crashed;
    outcome.detail = "no outcome and no exit status (the child was reaped elsewhere)";
  } else {
    outcome.kind = IsolatedOutcome::Kind::crashed;
    if (WIFSIGNALED(status)) {
      const int sig = WTERMSIG(status);
      outcome.detail = std::string("signal ") + std::to_string(sig) + ", " + ::strsignal(sig);
      if (sig == SIGKILL || sig == SIGTERM || sig == SIGINT || sig == SIGHUP || sig == SIGQUIT)
        outcome.kind = IsolatedOutcome::Kind::interrupted;  // from outside, not the parse
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == kChildOtherException) {
      outcome.detail = "an exception: " + (fields.empty() ? std::string("unknown") : fields[0]);
    } else {
      outcome.detail = "exit status " + std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
  }
  return outcome;
}

}  // namespace qtrain
