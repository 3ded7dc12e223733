// Post-accumulation hooks on each parameter's AccumulateGrad node, bucket bookkeeping.
#include "trainer/grad_sync.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/accumulate_grad.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>

namespace qtrain::trainer {

GradSync::GradSync(FlatParameters& flat, Collective& collective) : flat_(flat), collective_(collective) {
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
    collective_.all_reduce_sum(flat_.grads().narrow(0, b.begin, b.end - b.begin));
    ++next_bucket_;
  }
}

void GradSync::finish() {
  if (collective_.world_size() == 1) return;
  // Parameters that took no part in this step's graph never fired their hook.
  std::fill(missing_.begin(), missing_.end(), 0);
  launch_ready_prefix();
  collective_.wait();
  flat_.grads().div_(collective_.world_size());
  last_ = false;
}

}  // namespace qtrain::trainer
