// The process-wide communicator: MPI for the ranks of one job (one rank per GPU).
// Works as a single rank when started without mpirun. Later: NCCL is bootstrapped from it.
#pragma once
#include <mpi.h>

#include <string>

#include "common/error.h"

#define MPI_CHECK(call)                                                                   \
  do {                                                                                    \
    int mpi_status_ = (call);                                                             \
    if (mpi_status_ != MPI_SUCCESS) ::qtrain::dist::fail_mpi(#call, mpi_status_, __FILE__, __LINE__); \
  } while (0)

namespace qtrain::dist {

// RAII: MPI_Init_thread on construction (unless MPI is already up), MPI_Finalize on destruction.
class Session {
 public:
  Session(int* argc, char*** argv);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

 private:
  bool owns_ = false;
};

int rank();
int world_size();
// Rank among the processes of this node (selects the GPU): MPI's shared-memory split.
int local_rank();
inline bool is_main() { return rank() == 0; }

// In-place sum over all ranks (no-op on one rank).
void allreduce_sum(double* values, int count);
void allreduce_sum(long long* values, int count);

// Waits until every rank has arrived.
void barrier();

// The maximum over all ranks (e.g. of a stop flag).
int allreduce_max(int value);
// In-place element-wise maximum / minimum over all ranks.
void allreduce_max(double* values, int count);
void allreduce_min(double* values, int count);

[[noreturn]] void fail_mpi(const char* call, int status, const char* file, int line);

}  // namespace qtrain::dist
