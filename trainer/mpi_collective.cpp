// MPI_Iallreduce, MPI_Ireduce_scatter_block and MPI_Iallgather (all in place) on fp32/fp64
// host tensors, at most kMaxInFlight at once; wait() completes them in order.
#include "trainer/mpi_collective.h"

#include "common/dist.h"
#include "common/error.h"

namespace qtrain::trainer {

namespace {
MPI_Datatype mpi_type(const torch::Tensor& tensor, const char* what) {
  TORCH_CHECK(tensor.device().is_cpu() && tensor.is_contiguous(), "MPI ", what, " needs a contiguous CPU tensor");
  TORCH_CHECK(tensor.numel() <= INT32_MAX, "tensor too large for one MPI call");
  if (tensor.scalar_type() == torch::kFloat64) return MPI_DOUBLE;
  TORCH_CHECK(tensor.scalar_type() == torch::kFloat32, "MPI ", what, " supports fp32 and fp64");
  return MPI_FLOAT;
}

// Elements per rank of a sharded tensor (collective.h).
int segment_elements(const torch::Tensor& tensor, int world, const char* what) {
  TORCH_CHECK(tensor.numel() % world == 0, "MPI ", what, ": ", tensor.numel(), " elements do not split into ", world,
              " equal segments");
  return static_cast<int>(tensor.numel() / world);
}
}  // namespace

MpiCollective::MpiCollective() : rank_(dist::rank()), world_(dist::world_size()) {}

MpiCollective::~MpiCollective() {
  for (auto& p : pending_) MPI_Wait(&p.request, MPI_STATUS_IGNORE);
}

void MpiCollective::start(MPI_Request request, torch::Tensor move_to, torch::Tensor move_from) {
  pending_.push_back({request, std::move(move_to), std::move(move_from)});
  if (pending_.size() > kMaxInFlight) finish_oldest();
}

void MpiCollective::finish_oldest() {
  auto& p = pending_.front();
  MPI_CHECK(MPI_Wait(&p.request, MPI_STATUS_IGNORE));
  if (p.move_to.defined()) p.move_to.copy_(p.move_from);  // disjoint segments
  pending_.pop_front();
}

void MpiCollective::all_reduce_sum(const torch::Tensor& tensor) {
  if (world_ == 1) return;
  const MPI_Datatype type = mpi_type(tensor, "all-reduce");
  MPI_Request request;
  MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, tensor.data_ptr(), static_cast<int>(tensor.numel()), type, MPI_SUM,
                           MPI_COMM_WORLD, &request));
  start(request);
}

void MpiCollective::reduce_scatter_sum(const torch::Tensor& tensor) {
  if (world_ == 1) return;
  const MPI_Datatype type = mpi_type(tensor, "reduce-scatter");
  const int segment = segment_elements(tensor, world_, "reduce-scatter");
  MPI_Request request;
  MPI_CHECK(MPI_Ireduce_scatter_block(MPI_IN_PLACE, tensor.data_ptr(), segment, type, MPI_SUM, MPI_COMM_WORLD, &request));
  if (rank_ != 0)
    start(request, tensor.narrow(0, int64_t{rank_} * segment, segment), tensor.narrow(0, 0, segment));
  else
    start(request);
}

void MpiCollective::all_gather(const torch::Tensor& tensor) {
  if (world_ == 1) return;
  const MPI_Datatype type = mpi_type(tensor, "all-gather");
  const int segment = segment_elements(tensor, world_, "all-gather");
  MPI_Request request;
  // In place: each rank's contribution is already where it is received (segment rank).
  MPI_CHECK(MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, tensor.data_ptr(), segment, type, MPI_COMM_WORLD, &request));
  start(request);
}

void MpiCollective::broadcast(const torch::Tensor& tensor, int root) {
  if (world_ == 1) return;
  TORCH_CHECK(tensor.device().is_cpu() && tensor.is_contiguous(), "MPI broadcast needs a contiguous CPU tensor");
  const auto bytes = tensor.numel() * static_cast<int64_t>(tensor.element_size());
  auto* data = static_cast<char*>(tensor.data_ptr());
  for (int64_t offset = 0; offset < bytes; offset += INT32_MAX) {  // MPI counts are int
    const int count = static_cast<int>(std::min<int64_t>(INT32_MAX, bytes - offset));
    MPI_CHECK(MPI_Bcast(data + offset, count, MPI_BYTE, root, MPI_COMM_WORLD));
  }
}

void MpiCollective::wait() {
  while (!pending_.empty()) finish_oldest();
}

}  // namespace qtrain::trainer
