// Async-signal-safe: the handler stores into a sig_atomic_t and nothing else.
#include "trainer/stop_signal.h"

#include <csignal>

namespace qtrain::trainer {

namespace {
volatile std::sig_atomic_t g_signal = 0;
void on_signal(int signal) { g_signal = signal; }
}  // namespace

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
}

int stop_signal() { return g_signal; }

}  // namespace qtrain::trainer
