// Post-accumulation hooks on each parameter's AccumulateGrad node, bucket bookkeeping,
// staging buckets for owned gradients.
#include "trainer/grad_sync.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/accumulate_grad.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>

namespace qtrain::trainer {

namespace {
constexpr size_t kMaxStaged = 2;  // staging buckets in flight before the oldest are folded
}

GradSync::GradSync(FlatParameters& flat, Collective& collective)
    : flat_(flat), collective_(collective), sharded_(flat.shards() > 1), owned_grads_(flat.owns_grads_only()) {
  TORCH_CHECK(!sharded_ || flat.shards() == collective.world_size(), "flat buffers sharded ", flat.shards(),
              " ways over ", collective.world_size(), " ranks");
  if (sharded_) owned_ = flat.owned_ranges(collective.rank());
  const auto& entries = flat_.entries();
  bucket_of_.assign(entries.size(), 0);
  for (size_t b = 0; b < flat_.buckets().size(); ++b)
    for (size_t e : flat_.buckets()[b].entries) bucket_of_[e] = static_cast<int>(b);
  entry_ready_.assign(entries.size(), false);
  missing_.assign(flat_.buckets().size(), 0);
  // One rank with replicated gradients: nothing to communicate, no hooks. Owned gradients
  // are packed even on one rank (the .grad tensors are not views of the flat buffer).
  if (collective_.world_size() == 1 && !owned_grads_) return;
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
  if (owned_grads_ && active_) flush_micro_batch();
  active_ = last || owned_grads_;
  if (!active_) return;
  std::fill(entry_ready_.begin(), entry_ready_.end(), false);
  for (size_t b = 0; b < flat_.buckets().size(); ++b)
    missing_[b] = static_cast<int>(flat_.buckets()[b].entries.size());
  next_bucket_ = 0;
  if (last || !owned_grads_) launched_in_backward_ = 0;
}

void GradSync::mark_ready(size_t entry) {
  if (!active_ || entry_ready_[entry]) return;
  entry_ready_[entry] = true;
  --missing_[bucket_of_[entry]];
  const auto before = next_bucket_;
  launch_ready_prefix();
  launched_in_backward_ += static_cast<int>(next_bucket_ - before);
}

void GradSync::launch_ready_prefix() {
  const auto& buckets = flat_.buckets();
  while (next_bucket_ < buckets.size() && missing_[next_bucket_] == 0) launch(next_bucket_++);
}

void GradSync::launch(size_t index) {
  const auto& b = flat_.buckets()[index];
  if (!owned_grads_) {
    const auto grads = flat_.grads().narrow(0, b.begin, b.end - b.begin);
    if (sharded_)
      collective_.reduce_scatter_sum(grads);
    else
      collective_.all_reduce_sum(grads);
    return;
  }
  torch::NoGradGuard no_grad;
  auto staging = torch::zeros({b.segment()}, flat_.grads().options().device(flat_.device()));
  for (size_t i : b.entries) {
    auto param = flat_.entries()[i].param;
    auto& grad = param.mutable_grad();
    if (!grad.defined()) continue;  // no gradient this micro-batch: zeros
    staging.narrow(0, flat_.entries()[i].offset - b.begin, flat_.entries()[i].numel).copy_(grad.reshape({-1}));
    grad = torch::Tensor();  // freed: the next micro-batch's backward allocates it anew
  }
  collective_.reduce_scatter_sum(staging);
  staged_.emplace_back(index, std::move(staging));
  if (staged_.size() >= kMaxStaged) fold();
}

void GradSync::fold() {
  collective_.wait();
  torch::NoGradGuard no_grad;
  for (const auto& [index, staging] : staged_) {
    const auto segment = flat_.owned_segment(index);
    // With offload the owned gradients are in host memory: the segment comes over first.
    flat_.grads_at(segment.begin, segment.size())
        .add_(staging.narrow(0, segment.begin - flat_.buckets()[index].begin, segment.size()).to(flat_.storage_device()));
  }
  staged_.clear();
}

void GradSync::flush_micro_batch() {
  std::fill(missing_.begin(), missing_.end(), 0);  // parameters that got no gradient: zeros
  launch_ready_prefix();
  fold();
  active_ = false;
}

void GradSync::finish() {
  if (owned_grads_) {
    if (active_) flush_micro_batch();
    if (collective_.world_size() > 1)
      for (const auto& r : owned_) flat_.grads_at(r.begin, r.size()).div_(collective_.world_size());
    return;
  }
  if (collective_.world_size() == 1) return;
  // Parameters that took no part in this step's graph never fired their hook.
  std::fill(missing_.begin(), missing_.end(), 0);
  launch_ready_prefix();
  collective_.wait();
  if (sharded_)
    for (const auto& r : owned_) flat_.grads().narrow(0, r.begin, r.size()).div_(collective_.world_size());
  else
    flat_.grads().div_(collective_.world_size());
  active_ = false;
}

void GradSync::all_gather_parameters() {
  if (!sharded_ || flat_.owns_values_only()) return;  // stage 3 gathers them where they are used
  torch::NoGradGuard no_grad;
  for (const auto& b : flat_.buckets()) collective_.all_gather(flat_.values().narrow(0, b.begin, b.end - b.begin));
  collective_.wait();
}

}  // namespace qtrain::trainer
