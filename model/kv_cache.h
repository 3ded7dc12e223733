// The keys and values of the positions a decoder has already seen, per layer, so that
// generation runs the prompt through the model once (prefill) and then one new token per
// step: each step's projections and MLPs cost the same whatever the prompt length.
// Buffers are allocated once per layer at `capacity` positions and filled in place.
#pragma once
#include <torch/torch.h>

#include <utility>
#include <vector>

namespace qtrain::model {

class KvCache {
 public:
  // `capacity`: the most positions (prompt + generated) the cache will hold.
  KvCache(int64_t num_layers, int64_t capacity);

  // Positions already cached (the same for every layer once a forward has gone through all).
  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }

  // Stores the new keys and values of layer `layer`, k, v: [batch, kv_heads, new, head_dim],
  // at positions [length(), length() + new), and returns views of all cached positions
  // [batch, kv_heads, length() + new, head_dim]. The buffers take k's shape, dtype and device
  // the first time (a pruned model may have different kv_heads per layer).
  std::pair<torch::Tensor, torch::Tensor> append(int64_t layer, const torch::Tensor& k, const torch::Tensor& v);

  // Called by the model after the last layer: the new positions now count as cached.
  void advance(int64_t new_positions);

 private:
  int64_t capacity_ = 0, length_ = 0;
  std::vector<torch::Tensor> keys_, values_;
};

}  // namespace qtrain::model
