// The trainable parameters of the student, re-homed into one contiguous fp32 buffer, with
// their gradients as views of a second buffer of the same layout (as Megatron's contiguous
// grad buffer and DDP's gradient_as_bucket_view). The optimizer then updates a few large
// tensors instead of hundreds of small ones, and the gradient all-reduce sends contiguous
// buckets without copies. Layout: parameters in reverse registration order (the order in
// which backward produces their gradients), each padded to 64 elements. For ZeRO-1 over
// `shards` ranks each bucket is padded further to a multiple of 64 x shards elements, so it
// splits into `shards` equal, aligned segments (collective.h); rank r owns segment r of
// every bucket.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

namespace qtrain::trainer {

struct FlatEntry {
  std::string name;
  torch::Tensor param;  // the module's parameter, now a view of `values`
  int64_t offset = 0;   // in elements
  int64_t numel = 0;
  bool decay = true;    // weight decay applies (not to norms and biases)
};

struct Bucket {
  int64_t begin = 0, end = 0;      // element range of the flat buffers
  std::vector<size_t> entries;     // indices into entries()
};

struct FlatRange {
  int64_t begin = 0, end = 0;  // elements [begin, end) of the flat buffers
  int64_t size() const { return end - begin; }
};

class FlatParameters {
 public:
  // `params` in registration order (named_parameters()); all must be fp32 on one device.
  // `shards`: the ranks that share the optimizer state (ZeRO-1), 1 = not sharded.
  FlatParameters(const std::vector<std::pair<std::string, torch::Tensor>>& params, int64_t bucket_bytes,
                 int shards = 1);

  const std::vector<FlatEntry>& entries() const { return entries_; }
  const std::vector<Bucket>& buckets() const { return buckets_; }
  torch::Tensor& values() { return values_; }
  torch::Tensor& grads() { return grads_; }
  int64_t numel() const { return values_.numel(); }
  int shards() const { return shards_; }
  // What rank `rank` updates: segment `rank` of every bucket, in bucket order, adjacent
  // ranges merged (unsharded: one range, the whole buffer).
  std::vector<FlatRange> owned_ranges(int rank) const;
  void zero_grad() { grads_.zero_(); }
  // Re-points every parameter's .grad at its slice of grads() (after anything replaced it).
  void bind_grads();

 private:
  std::vector<FlatEntry> entries_;
  std::vector<Bucket> buckets_;
  int shards_ = 1;
  torch::Tensor values_, grads_;
};

// Norms (names ending in "norm.weight"), biases and learned quantization scales get no
// weight decay.
bool is_decayed(const std::string& name);

}  // namespace qtrain::trainer
