// Preallocated per-layer key/value buffers, written in place with narrow().copy_().
#include "model/kv_cache.h"

#include "common/error.h"

namespace qtrain::model {

KvCache::KvCache(int64_t num_layers, int64_t capacity)
    : capacity_(capacity), keys_(num_layers), values_(num_layers) {
  QT_REQUIRE(num_layers > 0 && capacity > 0, "a KV cache needs layers and capacity");
}

std::pair<torch::Tensor, torch::Tensor> KvCache::append(int64_t layer, const torch::Tensor& k, const torch::Tensor& v) {
  QT_REQUIRE(layer >= 0 && layer < static_cast<int64_t>(keys_.size()), "KV cache layer index out of range");
  const auto added = k.size(2), total = length_ + added;
  if (total > capacity_)
    throw Error("the KV cache holds " + std::to_string(capacity_) + " positions; " + std::to_string(total) +
                " were asked for")
        .expected("prompt + new tokens <= the cache's capacity");
  auto& keys = keys_[layer];
  auto& values = values_[layer];
  if (!keys.defined()) {
    keys = torch::empty({k.size(0), k.size(1), capacity_, k.size(3)}, k.options());
    values = torch::empty({v.size(0), v.size(1), capacity_, v.size(3)}, v.options());
  }
  QT_REQUIRE(keys.size(0) == k.size(0) && keys.size(1) == k.size(1) && keys.size(3) == k.size(3),
             "KV cache: new keys do not match the cached shape");
  keys.narrow(2, length_, added).copy_(k);
  values.narrow(2, length_, added).copy_(v);
  return {keys.narrow(2, 0, total), values.narrow(2, 0, total)};
}

void KvCache::advance(int64_t new_positions) { length_ += new_positions; }

}  // namespace qtrain::model
