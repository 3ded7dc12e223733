// NCCL communicator set-up over MPI and stream-ordered all-reduce, reduce-scatter, all-gather.
#include "trainer/cuda/nccl_collective.h"

#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <mpi.h>

#include "common/dist.h"

namespace qtrain::trainer {

namespace {
ncclDataType_t nccl_type(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return ncclFloat32;
    case torch::kBFloat16: return ncclBfloat16;
    case torch::kFloat16: return ncclFloat16;
    case torch::kFloat64: return ncclFloat64;
    default: TORCH_CHECK(false, "NCCL: unsupported dtype ", t);
  }
  return ncclFloat32;
}
}  // namespace

NcclCollective::NcclCollective(const torch::Device& device)
    : rank_(dist::rank()),
      world_(dist::world_size()),
      device_(device),
      stream_(c10::cuda::getStreamFromPool(/*isHighPriority=*/true, device.index())) {
  if (world_ == 1) return;
  c10::cuda::CUDAGuard guard(device_);
  ncclUniqueId id;
  if (rank_ == 0) NCCL_CHECK(ncclGetUniqueId(&id));
  MPI_CHECK(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD));
  NCCL_CHECK(ncclCommInitRank(&comm_, world_, id, rank_));
}

NcclCollective::~NcclCollective() {
  if (comm_) ncclCommDestroy(comm_);
}

void NcclCollective::before_launch(const torch::Tensor& tensor, const char* what) {
  TORCH_CHECK(tensor.is_cuda() && tensor.is_contiguous(), "NCCL ", what, " needs a contiguous CUDA tensor");
  // The tensor was produced on the current (compute) stream: communicate after it.
  at::cuda::CUDAEvent ready;
  ready.record(c10::cuda::getCurrentCUDAStream(device_.index()));
  ready.block(stream_);
}

void NcclCollective::after_launch(const torch::Tensor& tensor) {
  c10::cuda::CUDACachingAllocator::recordStream(tensor.storage().data_ptr(), stream_);
  pending_ = true;
}

void NcclCollective::all_reduce_sum(const torch::Tensor& tensor) {
  if (world_ == 1) return;
  c10::cuda::CUDAGuard guard(device_);
  before_launch(tensor, "all-reduce");
  NCCL_CHECK(ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), tensor.numel(), nccl_type(tensor.scalar_type()),
                           ncclSum, comm_, stream_.stream()));
  after_launch(tensor);
}

// In place in NCCL's sense: recvbuff == sendbuff + rank * recvcount (elements).
void NcclCollective::reduce_scatter_sum(const torch::Tensor& tensor) {
  if (world_ == 1) return;
  TORCH_CHECK(tensor.numel() % world_ == 0, "NCCL reduce-scatter: ", tensor.numel(), " elements do not split into ",
              world_, " equal segments");
  c10::cuda::CUDAGuard guard(device_);
  before_launch(tensor, "reduce-scatter");
  const size_t segment = static_cast<size_t>(tensor.numel() / world_);
  auto* base = static_cast<char*>(tensor.data_ptr());
  NCCL_CHECK(ncclReduceScatter(base, base + rank_ * segment * tensor.element_size(), segment,
                               nccl_type(tensor.scalar_type()), ncclSum, comm_, stream_.stream()));
  after_launch(tensor);
}

// In place in NCCL's sense: sendbuff == recvbuff + rank * sendcount (elements).
void NcclCollective::all_gather(const torch::Tensor& tensor) {
  if (world_ == 1) return;
  TORCH_CHECK(tensor.numel() % world_ == 0, "NCCL all-gather: ", tensor.numel(), " elements do not split into ", world_,
              " equal segments");
  c10::cuda::CUDAGuard guard(device_);
  before_launch(tensor, "all-gather");
  const size_t segment = static_cast<size_t>(tensor.numel() / world_);
  auto* base = static_cast<char*>(tensor.data_ptr());
  NCCL_CHECK(ncclAllGather(base + rank_ * segment * tensor.element_size(), base, segment,
                           nccl_type(tensor.scalar_type()), comm_, stream_.stream()));
  after_launch(tensor);
}

void NcclCollective::broadcast(const torch::Tensor& tensor, int root) {
  if (world_ == 1) return;
  TORCH_CHECK(tensor.is_cuda() && tensor.is_contiguous(), "NCCL broadcast needs a contiguous CUDA tensor");
  c10::cuda::CUDAGuard guard(device_);
  // On the compute stream itself: set-up time, nothing to overlap with.
  NCCL_CHECK(ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(), tensor.numel() * tensor.element_size(), ncclUint8, root,
                           comm_, c10::cuda::getCurrentCUDAStream(device_.index()).stream()));
}

void NcclCollective::wait() {
  if (!pending_) return;
  c10::cuda::CUDAGuard guard(device_);
  at::cuda::CUDAEvent done;
  done.record(stream_);
  done.block(c10::cuda::getCurrentCUDAStream(device_.index()));
  pending_ = false;
}

}  // namespace qtrain::trainer
