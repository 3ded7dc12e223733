// The GPU collective: NCCL all-reduce, reduce-scatter and all-gather on a dedicated stream, ordered after the compute
// stream's work with events, so that communication overlaps the rest of backward. The
// communicator is bootstrapped over MPI (rank 0's unique id is broadcast). CUDA builds only.
#pragma once
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAStream.h>
#include <nccl.h>

#include <vector>

#include "trainer/collective.h"

#define NCCL_CHECK(call)                                                                      \
  do {                                                                                        \
    ncclResult_t nccl_status_ = (call);                                                       \
    if (nccl_status_ != ncclSuccess)                                                          \
      throw std::runtime_error(std::string("NCCL call failed: ") + #call + ": " +             \
                               ncclGetErrorString(nccl_status_) + " at " + __FILE__ + ":" +   \
                               std::to_string(__LINE__));                                     \
  } while (0)

namespace qtrain::trainer {

class NcclCollective : public Collective {
 public:
  explicit NcclCollective(const torch::Device& device);
  ~NcclCollective() override;
  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  void all_reduce_sum(const torch::Tensor& tensor) override;
  void reduce_scatter_sum(const torch::Tensor& tensor) override;
  void all_gather(const torch::Tensor& tensor) override;
  void broadcast(const torch::Tensor& tensor, int root) override;
  void wait() override;

 private:
  // Orders the communication stream after the compute stream's work on `tensor`, and keeps
  // the caching allocator from reusing its memory before NCCL is done with it.
  void before_launch(const torch::Tensor& tensor, const char* what);
  void after_launch(const torch::Tensor& tensor);
  int rank_ = 0, world_ = 1;
  torch::Device device_;
  ncclComm_t comm_ = nullptr;
  c10::cuda::CUDAStream stream_;
  bool pending_ = false;
};

}  // namespace qtrain::trainer
