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
                               int64_t bucket_bytes) {
  QT_REQUIRE(!params.empty(), "no trainable parameters");
  const auto options = params.front().second.options();
  int64_t total = 0;
  for (auto it = params.rbegin(); it != params.rend(); ++it) {
    const auto& [name, p] = *it;
    TORCH_CHECK(p.scalar_type() == torch::kFloat32 && p.device() == options.device(),
                "flat parameters must be fp32 on one device: ", name);
    entries_.push_back({name, p, total, p.numel(), is_decayed(name)});
    total += padded(p.numel());
  }
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
  // Buckets: consecutive entries until `bucket_bytes` is reached.
  const int64_t bucket_elements = std::max<int64_t>(1, bucket_bytes / 4);
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (buckets_.empty() || buckets_.back().end - buckets_.back().begin >= bucket_elements)
      buckets_.push_back({entries_[i].offset, entries_[i].offset, {}});
    buckets_.back().entries.push_back(i);
    buckets_.back().end = entries_[i].offset + padded(entries_[i].numel);
  }
}

void FlatParameters::bind_grads() {
  for (auto& e : entries_)
    e.param.mutable_grad() = grads_.narrow(0, e.offset, e.numel).view(e.param.sizes());
}

}  // namespace qtrain::trainer
