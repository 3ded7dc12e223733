// MPI session and the few collectives that the host side needs (metrics, counts).
#include "common/dist.h"

#include <stdexcept>

namespace qtrain::dist {

namespace {
int g_local_rank = 0;  // set once by Session (a collective call), fixed for the process
}  // namespace

Session::Session(int* argc, char*** argv) {
  int initialized = 0;
  MPI_CHECK(MPI_Initialized(&initialized));
  if (!initialized) {
    int provided = 0;
    MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided));
    owns_ = true;
  }
  // Errors come back as return codes so that MPI_CHECK can name the call.
  MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  MPI_Comm node;
  MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  MPI_CHECK(MPI_Comm_rank(node, &g_local_rank));
  MPI_CHECK(MPI_Comm_free(&node));
}

Session::~Session() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owns_ && !finalized) MPI_Finalize();
}

static bool mpi_up() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

int rank() {
  if (!mpi_up()) return 0;
  int r = 0;
  MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &r));
  return r;
}

int world_size() {
  if (!mpi_up()) return 1;
  int n = 1;
  MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &n));
  return n;
}

int local_rank() { return g_local_rank; }

void allreduce_sum(double* values, int count) {
  if (world_size() == 1) return;
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, values, count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
}

void allreduce_sum(long long* values, int count) {
  if (world_size() == 1) return;
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, values, count, MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD));
}

void barrier() {
  if (world_size() > 1) MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
}

int allreduce_max(int value) {
  if (world_size() == 1) return value;
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
  return value;
}

void allreduce_max(double* values, int count) {
  if (world_size() == 1) return;
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, values, count, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
}

void allreduce_min(double* values, int count) {
  if (world_size() == 1) return;
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, values, count, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD));
}

void fail_mpi(const char* call, int status, const char* file, int line) {
  char text[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  MPI_Error_string(status, text, &len);
  throw std::runtime_error(std::string("MPI call failed: ") + call + ": " + text + " at " + file + ":" +
                           std::to_string(line));
}

}  // namespace qtrain::dist
