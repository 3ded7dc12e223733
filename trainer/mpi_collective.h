// The CPU collective: non-blocking MPI all-reduce, reduce-scatter and all-gather on host tensors.
#pragma once
#include <mpi.h>

#include <deque>

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
  // Open MPI's non-blocking collectives (libnbc) hold temporaries of about the message's
  // size while in flight: at most this many are, so that their memory stays a few buckets
  // however many buckets a step launches (without a bound, ZeRO-0/1's gradients and ZeRO-1's
  // parameters would all be in flight at once, doubling their memory).
  static constexpr size_t kMaxInFlight = 4;
  struct Pending {
    MPI_Request request;
    // In-place MPI_Reduce_scatter_block leaves the result in the first segment: copied to
    // the rank's own segment (destination, source) once the request is done.
    torch::Tensor move_to, move_from;
  };
  void start(MPI_Request request, torch::Tensor move_to = {}, torch::Tensor move_from = {});
  void finish_oldest();

  int rank_ = 0, world_ = 1;
  std::deque<Pending> pending_;
};

}  // namespace qtrain::trainer
