// Flat parameter and gradient buffers, their partition into buckets, and owned storage.
#include "trainer/flat_parameters.h"

#include <algorithm>

#include "common/error.h"
#include "model/layers.h"
#include "quant/model_state.h"
#include "common/strings.h"

namespace qtrain::trainer {

namespace {
constexpr int64_t kAlign = 64;  // elements: 256 bytes, so every view starts aligned

int64_t padded(int64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

}  // namespace

bool is_decayed(const std::string& name) {
  return !ends_with(name, "norm.weight") && !ends_with(name, "bias") && !quant::is_quantizer_state(name);
}

FlatParameters::FlatParameters(const std::vector<std::pair<std::string, torch::Tensor>>& params,
                               int64_t bucket_bytes, int shards)
    : FlatParameters(params, FlatOptions{bucket_bytes, shards, 0, shards > 1 ? 1 : 0, {}, true}) {}

FlatParameters::FlatParameters(const std::vector<std::pair<std::string, torch::Tensor>>& params, FlatOptions options)
    : options_(std::move(options)) {
  const int shards = options_.shards;
  QT_REQUIRE(!params.empty(), "no trainable parameters");
  QT_REQUIRE(shards >= 1 && options_.rank >= 0 && options_.rank < shards, "rank outside the shards");
  QT_REQUIRE(options_.zero_stage >= 0 && options_.zero_stage <= 3, "ZeRO stage outside 0..3");
  const auto tensor_options = params.front().second.options().requires_grad(false);
  device_ = tensor_options.device();
  // Buckets: consecutive entries until `bucket_bytes` is reached (or, at stage 3, the unit
  // changes); each bucket's length is a multiple of kAlign * shards.
  const int64_t bucket_elements = std::max<int64_t>(1, options_.bucket_bytes / 4);
  const int64_t bucket_multiple = kAlign * shards;
  const bool by_unit = options_.zero_stage >= 3 && options_.unit_of;
  int64_t total = 0;
  bool open = false;  // the last bucket still takes entries
  auto close_bucket = [&] {
    total = (total + bucket_multiple - 1) / bucket_multiple * bucket_multiple;
    buckets_.back().end = total;
  };
  for (auto it = params.rbegin(); it != params.rend(); ++it) {
    const auto& [name, p] = *it;
    TORCH_CHECK(p.scalar_type() == tensor_options.dtype() && p.device() == tensor_options.device(),
                "flat parameters must be of one dtype on one device: ", name);
    const int unit = by_unit ? options_.unit_of(name) : 0;
    if (open && (total - buckets_.back().begin >= bucket_elements || unit != buckets_.back().unit)) {
      close_bucket();
      open = false;
    }
    if (!open) {
      buckets_.push_back({total, total, {}, unit});
      open = true;
    }
    buckets_.back().entries.push_back(entries_.size());
    entries_.push_back({name, p, total, p.numel(), is_decayed(name)});
    total += padded(p.numel());
  }
  close_bucket();
  total_ = total;
  for (size_t b = 0; b < buckets_.size(); ++b)
    for (size_t i : buckets_[b].entries) by_name_[entries_[i].name] = {i, b};
  int64_t owned = 0;
  for (const auto& b : buckets_) {
    owned_begin_.push_back(owned);
    owned += b.segment() / shards;
  }
  torch::NoGradGuard no_grad;
  QT_REQUIRE(!options_.offload || owns_values_only(), "offload needs ZeRO stage 3");
  const auto stored_options = options_.offload ? tensor_options.device(torch::kCPU).pinned_memory(device_.is_cuda())
                                               : tensor_options;
  if (owns_values_only()) {
    values_ = torch::zeros({owned}, stored_options);
    for (const auto& e : entries_)
      if (model::materialised(e.param)) fill(e.name, e.param);  // a skeleton's come later
  } else {
    values_ = torch::zeros({total}, tensor_options);
    for (auto& e : entries_) {
      QT_REQUIRE(model::materialised(e.param), "a parameter without values below ZeRO stage 3: " + e.name);
      values_.narrow(0, e.offset, e.numel).copy_(e.param.reshape({-1}));
      // The module keeps its Parameter object; only its storage moves into the flat buffer.
      e.param.set_(values_.storage(), e.offset, e.param.sizes(), e.param.contiguous().strides());
    }
  }
  if (options_.with_grads) grads_ = torch::zeros({owns_grads_only() ? owned : total}, owns_values_only() ? stored_options : tensor_options);
  bind_grads();
}

void FlatParameters::fill(const std::string& name, const torch::Tensor& value) {
  const auto* e = entry(name);
  QT_REQUIRE(e, "no flat parameter named " + name);
  QT_REQUIRE(value.numel() == e->numel, "a value of " + std::to_string(value.numel()) + " elements for " + name +
                                            ", which has " + std::to_string(e->numel));
  torch::NoGradGuard no_grad;
  const auto flat_value = value.reshape({-1});
  if (!owns_values_only()) {
    values_.narrow(0, e->offset, e->numel).copy_(flat_value);
    return;
  }
  const auto piece = *owned_piece(name);
  if (piece.length > 0) values_at(piece.flat_begin, piece.length).copy_(flat_value.narrow(0, piece.param_begin, piece.length));
}

std::vector<FlatRange> FlatParameters::owned_ranges(int rank) const {
  TORCH_CHECK(rank >= 0 && rank < options_.shards, "rank ", rank, " outside the ", options_.shards, " shards");
  std::vector<FlatRange> out;
  for (const auto& b : buckets_) {
    const int64_t segment = b.segment() / options_.shards;
    const FlatRange r{b.begin + rank * segment, b.begin + (rank + 1) * segment};
    if (!out.empty() && out.back().end == r.begin)
      out.back().end = r.end;
    else
      out.push_back(r);
  }
  return out;
}

FlatRange FlatParameters::owned_segment(size_t b) const {
  const auto& bucket = buckets_.at(b);
  const int64_t segment = bucket.segment() / options_.shards;
  return {bucket.begin + options_.rank * segment, bucket.begin + (options_.rank + 1) * segment};
}

std::optional<OwnedPiece> FlatParameters::owned_piece(const std::string& name) const {
  const auto it = by_name_.find(name);
  if (it == by_name_.end()) return std::nullopt;
  const auto& e = entries_[it->second.first];
  const auto segment = owned_segment(it->second.second);
  const int64_t begin = std::max(e.offset, segment.begin), end = std::min(e.offset + e.numel, segment.end);
  if (begin >= end) return OwnedPiece{0, e.offset, 0};
  return OwnedPiece{begin - e.offset, begin, end - begin};
}

const FlatEntry* FlatParameters::entry(const std::string& name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &entries_[it->second.first];
}

int64_t FlatParameters::stored_offset(int64_t begin, int64_t length, bool whole) const {
  if (whole || options_.shards == 1) return begin;  // one shard: owned storage is the flat layout
  // The bucket holding `begin`: the last one starting at or before it.
  const auto it = std::upper_bound(buckets_.begin(), buckets_.end(), begin,
                                   [](int64_t x, const Bucket& b) { return x < b.begin; });
  QT_REQUIRE(it != buckets_.begin(), "flat position before the first bucket");
  const size_t b = static_cast<size_t>(it - buckets_.begin()) - 1;
  const auto segment = owned_segment(b);
  TORCH_CHECK(begin >= segment.begin && begin + length <= segment.end, "flat range [", begin, ", ", begin + length,
              ") is not in this rank's segment [", segment.begin, ", ", segment.end, ")");
  return owned_begin_[b] + begin - segment.begin;
}

torch::Tensor FlatParameters::values_at(int64_t begin, int64_t length) {
  return values_.narrow(0, stored_offset(begin, length, !owns_values_only()), length);
}

torch::Tensor FlatParameters::grads_at(int64_t begin, int64_t length) {
  QT_REQUIRE(grads_.defined(), "these flat parameters keep no gradients");
  return grads_.narrow(0, stored_offset(begin, length, !owns_grads_only()), length);
}

void FlatParameters::zero_grad() {
  if (grads_.defined()) grads_.zero_();
  if (owns_grads_only())
    for (auto& e : entries_) e.param.mutable_grad() = torch::Tensor();
}

void FlatParameters::bind_grads() {
  if (!options_.with_grads) return;
  for (auto& e : entries_)
    e.param.mutable_grad() =
        owns_grads_only() ? torch::Tensor() : grads_.narrow(0, e.offset, e.numel).view(e.param.sizes());
}

}  // namespace qtrain::trainer
