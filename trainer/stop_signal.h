// SIGTERM and SIGINT (SLURM preemption, Ctrl-C) only raise a flag; the training loop checks
// it between steps, agrees on it across ranks, saves a checkpoint and exits.
#pragma once

namespace qtrain::trainer {

void install_stop_handlers();
// The signal received (SIGTERM or SIGINT), or 0.
int stop_signal();

}  // namespace qtrain::trainer
