// Flat parameter and gradient buffers, and their partition into all-reduce buckets.
#include "trainer/flat_parameters.h"

#include "common/error.h"

namespace qtrain::trainer {

namespace {
constexpr int64_t kAlign = 64;  // elements: 256 bytes, so every view starts aligned

int64_t padded(int64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

bool is_decayed(const std::string& name) {
  return !ends_with(name, "norm.weight") && !ends_with(name, "bias") && name.find(".quant.") == std::string::npos;
}

FlatParameters::FlatParameters(const std::vector<std::pair<std::string, torch::Tensor>>& params,
                               int64_t bucket_bytes, int shards)
    : shards_(shards) {
  QT_REQUIRE(!params.empty(), "no trainable parameters");
  QT_REQUIRE(shards >= 1, "shards must be at least 1");
  const auto options = params.front().second.options();
  // Buckets: consecutive entries until `bucket_bytes` is reached; each bucket's length is a
  // multiple of kAlign * shards (unsharded, every entry is already a multiple of kAlign).
  const int64_t bucket_elements = std::max<int64_t>(1, bucket_bytes / 4);
  const int64_t bucket_multiple = kAlign * shards;
  int64_t total = 0;
  bool open = false;  // the last bucket still takes entries
  auto close_bucket = [&] {
    total = (total + bucket_multiple - 1) / bucket_multiple * bucket_multiple;
    buckets_.back().end = total;
  };
  for (auto it = params.rbegin(); it != params.rend(); ++it) {
    const auto& [name, p] = *it;
    TORCH_CHECK(p.scalar_type() == torch::kFloat32 && p.device() == options.device(),
                "flat parameters must be fp32 on one device: ", name);
    if (open && total - buckets_.back().begin >= bucket_elements) {
      close_bucket();
      open = false;
    }
    if (!open) {
      buckets_.push_back({total, total, {}});
      open = true;
    }
    buckets_.back().entries.push_back(entries_.size());
    entries_.push_back({name, p, total, p.numel(), is_decayed(name)});
    total += padded(p.numel());
  }
  close_bucket();
  values_ = torch::zeros({total}, options);
  grads_ = torch::zeros({total}, options);
  torch::NoGradGuard no_grad;
  for (auto& e : entries_) {
    auto view = values_.narrow(0, e.offset, e.numel);
    view.copy_(e.param.reshape({-1}));
    // The module keeps its Parameter object; only its storage moves into the flat buffer.
    e.param.set_(values_.storage(), e.offset, e.param.sizes(), e.param.contiguous().strides());
  }
  bind_grads();
}

std::vector<FlatRange> FlatParameters::owned_ranges(int rank) const {
  TORCH_CHECK(rank >= 0 && rank < shards_, "rank ", rank, " outside the ", shards_, " shards");
  std::vector<FlatRange> out;
  for (const auto& b : buckets_) {
    const int64_t segment = (b.end - b.begin) / shards_;
    const FlatRange r{b.begin + rank * segment, b.begin + (rank + 1) * segment};
    if (!out.empty() && out.back().end == r.begin)
      out.back().end = r.end;
    else
      out.push_back(r);
  }
  return out;
}

void FlatParameters::bind_grads() {
  for (auto& e : entries_)
    e.param.mutable_grad() = grads_.narrow(0, e.offset, e.numel).view(e.param.sizes());
}

}  // namespace qtrain::trainer
