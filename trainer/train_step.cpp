// The step: micro-batches, gradient sync, norm, skip-or-update.
#include "trainer/train_step.h"

#include <cmath>
#include <limits>
#include <optional>

#include "common/dist.h"
#include "trainer/pruning.h"
#include "trainer/sharded_model.h"

namespace qtrain::trainer {

namespace {

// Forward and backward of this rank's micro-batches, the gradients synchronised; returns the
// tokens, and the loss terms' sums in `device_sums`.
int64_t accumulate_micro_batches(StepContext& ctx, const data::StepBatch& batch, torch::Tensor& device_sums) {
  const auto k = static_cast<int64_t>(batch.micro_batches.size());
  // ZeRO-3: embeddings, final norms and lm_heads stay gathered for the micro-batches.
  std::optional<ShardedModel::Scope> student_root, teacher_root;
  if (ctx.sharded_student) student_root.emplace(ctx.sharded_student->gather_root());
  if (ctx.sharded_teacher) teacher_root.emplace(ctx.sharded_teacher->gather_root());
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
    device_sums += torch::stack({total.detach(), terms.ce.detach(), terms.kd.detach(), terms.hidden.detach(),
                                 terms.router.detach()})
                       .to(torch::kFloat64);
    tokens += ids.numel();
  }
  ctx.grad_sync.finish();
  return tokens;
}

}  // namespace

StepResult train_step(StepContext& ctx, const data::StepBatch& batch, double lr) {
  const auto k = static_cast<int64_t>(batch.micro_batches.size());
  ctx.flat.zero_grad();
  // Loss terms stay on the device until the step ends: one host sync per step, not per micro-batch.
  auto device_sums = torch::zeros({5}, torch::TensorOptions().dtype(torch::kFloat64).device(ctx.device));
  const int64_t tokens = accumulate_micro_batches(ctx, batch, device_sums);
  if (ctx.pruning) ctx.pruning->mask_gradients(ctx.flat);  // pruned weights, zero moments: no update at all
  // ZeRO-1/2/3: each rank holds only its segments' gradients; their squared norms are summed
  // over the ranks with the loss terms, in the same small all-reduce.
  const bool sharded = ctx.optimizer.sharded();
  auto squares = torch::zeros({1}, device_sums.options());
  if (sharded)
    for (const auto& g : ctx.optimizer.owned_grads())
      squares += at::linalg_vector_norm(g, 2, c10::nullopt, false, torch::kFloat64).square();
  const auto host_sums = torch::cat({device_sums, squares}).cpu();
  double sums[7];
  for (int i = 0; i < 5; ++i) sums[i] = host_sums[i].item<double>();
  sums[5] = static_cast<double>(tokens);
  sums[6] = host_sums[5].item<double>();
  dist::allreduce_sum(sums, 7);
  const double micro_batches = static_cast<double>(k * dist::world_size());
  StepResult r;
  r.total = sums[0] / micro_batches;
  r.ce = sums[1] / micro_batches;
  r.kd = sums[2] / micro_batches;
  r.hidden = sums[3] / micro_batches;
  r.router = sums[4] / micro_batches;
  r.tokens = static_cast<int64_t>(sums[5]);
  r.buckets_overlapped = ctx.grad_sync.launched_during_backward();
  // Not sharded, gradients are identical on every rank after the all-reduce, so is their norm.
  r.grad_norm = sharded ? std::sqrt(sums[6]) : ctx.flat.grads().norm().item<double>();
  r.skipped = !std::isfinite(r.total) || !std::isfinite(r.grad_norm);
  if (r.skipped) return r;
  if (ctx.grad_clip > 0 && r.grad_norm > ctx.grad_clip)
    for (const auto& g : ctx.optimizer.owned_grads()) g.mul_(ctx.grad_clip / (r.grad_norm + 1e-6));
  ctx.optimizer.step(lr);
  ctx.grad_sync.all_gather_parameters();  // ZeRO-1/2: every rank's updated segments to all ranks
  return r;
}

}  // namespace qtrain::trainer
