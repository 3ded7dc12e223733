// The CPU collective: non-blocking MPI all-reduce, reduce-scatter and all-gather on host tensors.
#pragma once
#include <mpi.h>

#include <vector>

#include "trainer/collective.h"

namespace qtrain::trainer {

class MpiCollective : public Collective {
 public:
  MpiCollective();
  ~MpiCollective() override;
  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  void all_reduce_sum(const torch::Tensor& tensor) override;
  void reduce_scatter_sum(const torch::Tensor& tensor) override;
  void all_gather(const torch::Tensor& tensor) override;
  void broadcast(const torch::Tensor& tensor, int root) override;
  void wait() override;

 private:
  int rank_ = 0, world_ = 1;
  std::vector<MPI_Request> pending_;
  // In-place MPI_Reduce_scatter_block leaves the result in the first segment: copied to the
  // rank's own segment (destination, source) once the request is done.
  std::vector<std::pair<torch::Tensor, torch::Tensor>> moves_after_wait_;
};

}  // namespace qtrain::trainer
