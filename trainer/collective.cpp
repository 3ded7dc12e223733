// Picks the collective for a device.
#include "trainer/collective.h"

#include "trainer/mpi_collective.h"

#if QTRAIN_WITH_NCCL
#include "trainer/cuda/nccl_collective.h"
#endif

namespace qtrain::trainer {

std::unique_ptr<Collective> make_collective(const torch::Device& device) {
#if QTRAIN_WITH_NCCL
  if (device.is_cuda()) return std::make_unique<NcclCollective>(device);
#endif
  TORCH_CHECK(!device.is_cuda(), "this build has no NCCL");
  return std::make_unique<MpiCollective>();
}

}  // namespace qtrain::trainer
