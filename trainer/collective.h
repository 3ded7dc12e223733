// Collectives on device tensors between the ranks of the job: MPI for CPU tensors, NCCL
// (bootstrapped over MPI) for CUDA tensors. Operations are asynchronous and in place;
// wait() completes every outstanding one. All ranks must issue the same operations in the
// same order (NCCL's rule), which GradSync guarantees by launching buckets in index order.
// Sharded layout (ZeRO-1): a tensor of n elements, n a multiple of world_size, is split into
// world_size equal consecutive segments of n / world_size elements; rank r owns segment r.
#pragma once
#include <torch/torch.h>

#include <memory>

namespace qtrain::trainer {

class Collective {
 public:
  virtual ~Collective() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // Starts an in-place sum of `tensor` (contiguous) over all ranks.
  virtual void all_reduce_sum(const torch::Tensor& tensor) = 0;
  // Starts an in-place reduce-scatter: after wait(), segment rank() of `tensor` holds the
  // sum over all ranks of that segment; the other segments hold unspecified values.
  virtual void reduce_scatter_sum(const torch::Tensor& tensor) = 0;
  // Starts an in-place all-gather: after wait(), every segment r of `tensor` holds rank r's
  // segment r (each rank's own segment is its input; the others are overwritten).
  virtual void all_gather(const torch::Tensor& tensor) = 0;
  // Copies `tensor` of rank `root` to every rank (synchronous: done when it returns on the
  // host for MPI, ordered on the compute stream for NCCL).
  virtual void broadcast(const torch::Tensor& tensor, int root) = 0;
  // Blocks (the host for MPI; the compute stream for NCCL) until every started operation
  // has finished.
  virtual void wait() = 0;
};

// MPI on CPU, NCCL on CUDA (only in builds with CUDA). With one rank, operations are no-ops.
std::unique_ptr<Collective> make_collective(const torch::Device& device);

}  // namespace qtrain::trainer
