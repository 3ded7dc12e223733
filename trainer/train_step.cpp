// The step: micro-batches, gradient sync, norm, skip-or-update.
#include "trainer/train_step.h"

#include <cmath>
#include <limits>

#include "common/dist.h"
#include "trainer/pruning.h"

namespace qtrain::trainer {

StepResult train_step(StepContext& ctx, const data::StepBatch& batch, double lr) {
  const auto k = static_cast<int64_t>(batch.micro_batches.size());
  ctx.flat.zero_grad();
  // Loss terms stay on the device until the step ends: one host sync per step, not per micro-batch.
  auto device_sums = torch::zeros({4}, torch::TensorOptions().dtype(torch::kFloat64).device(ctx.device));
  int64_t tokens = 0;
  for (int64_t j = 0; j < k; ++j) {
    const auto& mb = batch.micro_batches[j];
    const auto ids = mb.input_ids.to(ctx.device, /*non_blocking=*/true);
    const auto labels = mb.labels.to(ctx.device, /*non_blocking=*/true);
    ctx.grad_sync.begin_micro_batch(j == k - 1);
    auto terms = ctx.loss.compute(ids, labels);
    auto total = terms.total;
    if (ctx.inject_nan && dist::rank() == 0) total = total * std::numeric_limits<double>::quiet_NaN();
    (total / static_cast<double>(k)).backward();
    device_sums += torch::stack({total.detach(), terms.ce.detach(), terms.kd.detach(), terms.hidden.detach()})
                       .to(torch::kFloat64);
    tokens += ids.numel();
  }
  ctx.grad_sync.finish();
  if (ctx.pruning) ctx.pruning->mask_gradients();  // pruned weights, zero moments: no update at all
  const auto host_sums = device_sums.cpu();
  double sums[5];
  for (int i = 0; i < 4; ++i) sums[i] = host_sums[i].item<double>();
  sums[4] = static_cast<double>(tokens);
  dist::allreduce_sum(sums, 5);
  const double micro_batches = static_cast<double>(k * dist::world_size());
  StepResult r;
  r.total = sums[0] / micro_batches;
  r.ce = sums[1] / micro_batches;
  r.kd = sums[2] / micro_batches;
  r.hidden = sums[3] / micro_batches;
  r.tokens = static_cast<int64_t>(sums[4]);
  r.buckets_overlapped = ctx.grad_sync.launched_during_backward();
  // Gradients are identical on every rank after the all-reduce, so is their norm.
  r.grad_norm = ctx.flat.grads().norm().item<double>();
  r.skipped = !std::isfinite(r.total) || !std::isfinite(r.grad_norm);
  if (r.skipped) return r;
  if (ctx.grad_clip > 0 && r.grad_norm > ctx.grad_clip) ctx.flat.grads().mul_(ctx.grad_clip / (r.grad_norm + 1e-6));
  ctx.optimizer.step(lr);
  return r;
}

}  // namespace qtrain::trainer
