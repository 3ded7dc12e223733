// Post-accumulation hooks on each parameter's AccumulateGrad node, bucket bookkeeping.
#include "trainer/grad_sync.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/accumulate_grad.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>

namespace qtrain::trainer {

GradSync::GradSync(FlatParameters& flat, Collective& collective)
    : flat_(flat), collective_(collective), sharded_(flat.shards() > 1) {
  TORCH_CHECK(!sharded_ || flat.shards() == collective.world_size(), "flat buffers sharded ", flat.shards(),
              " ways over ", collective.world_size(), " ranks");
  if (sharded_) owned_ = flat.owned_ranges(collective.rank());
  const auto& entries = flat_.entries();
  bucket_of_.assign(entries.size(), 0);
  for (size_t b = 0; b < flat_.buckets().size(); ++b)
    for (size_t e : flat_.buckets()[b].entries) bucket_of_[e] = static_cast<int>(b);
  entry_ready_.assign(entries.size(), false);
  missing_.assign(flat_.buckets().size(), 0);
  if (collective_.world_size() == 1) return;  // nothing to communicate, no hooks
  for (size_t i = 0; i < entries.size(); ++i) {
    auto accumulator = torch::autograd::impl::grad_accumulator(entries[i].param);
    TORCH_CHECK(accumulator, "parameter has no gradient accumulator: ", entries[i].name);
    accumulator->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
        [this, i](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
          mark_ready(i);
          return outputs;
        }));
    accumulators_.push_back(std::move(accumulator));
  }
}

GradSync::~GradSync() = default;

void GradSync::begin_micro_batch(bool last) {
  last_ = last;
  if (!last) return;
  std::fill(entry_ready_.begin(), entry_ready_.end(), false);
  for (size_t b = 0; b < flat_.buckets().size(); ++b)
    missing_[b] = static_cast<int>(flat_.buckets()[b].entries.size());
  next_bucket_ = 0;
  launched_in_backward_ = 0;
}

void GradSync::mark_ready(size_t entry) {
  if (!last_ || entry_ready_[entry]) return;
  entry_ready_[entry] = true;
  --missing_[bucket_of_[entry]];
  const auto before = next_bucket_;
  launch_ready_prefix();
  launched_in_backward_ += static_cast<int>(next_bucket_ - before);
}

void GradSync::launch_ready_prefix() {
  const auto& buckets = flat_.buckets();
  while (next_bucket_ < buckets.size() && missing_[next_bucket_] == 0) {
    const auto& b = buckets[next_bucket_];
    const auto grads = flat_.grads().narrow(0, b.begin, b.end - b.begin);
    if (sharded_)
      collective_.reduce_scatter_sum(grads);
    else
      collective_.all_reduce_sum(grads);
    ++next_bucket_;
  }
}

void GradSync::finish() {
  if (collective_.world_size() == 1) return;
  // Parameters that took no part in this step's graph never fired their hook.
  std::fill(missing_.begin(), missing_.end(), 0);
  launch_ready_prefix();
  collective_.wait();
  if (sharded_)
    for (const auto& r : owned_) flat_.grads().narrow(0, r.begin, r.size()).div_(collective_.world_size());
  else
    flat_.grads().div_(collective_.world_size());
  last_ = false;
}

void GradSync::all_gather_parameters() {
  if (!sharded_) return;
  torch::NoGradGuard no_grad;
  for (const auto& b : flat_.buckets()) collective_.all_gather(flat_.values().narrow(0, b.begin, b.end - b.begin));
  collective_.wait();
}

}  // namespace qtrain::trainer
