// Collectives on device tensors between the ranks of the job: MPI for CPU tensors, NCCL
// (bootstrapped over MPI) for CUDA tensors. Operations are asynchronous and in place;
// wait() completes every outstanding one. All ranks must issue the same operations in the
// same order (NCCL's rule), which GradSync guarantees by launching buckets in index order.
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
