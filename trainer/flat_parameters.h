// The trainable parameters of the student, re-homed into one contiguous fp32 buffer, with
// their gradients as views of a second buffer of the same layout (as Megatron's contiguous
// grad buffer and DDP's gradient_as_bucket_view). The optimizer then updates a few large
// tensors instead of hundreds of small ones, and the gradient all-reduce sends contiguous
// buckets without copies. Layout: parameters in reverse registration order (the order in
// which backward produces their gradients), each padded to 64 elements.
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

class FlatParameters {
 public:
  // `params` in registration order (named_parameters()); all must be fp32 on one device.
  FlatParameters(const std::vector<std::pair<std::string, torch::Tensor>>& params, int64_t bucket_bytes);

  const std::vector<FlatEntry>& entries() const { return entries_; }
  const std::vector<Bucket>& buckets() const { return buckets_; }
  torch::Tensor& values() { return values_; }
  torch::Tensor& grads() { return grads_; }
  int64_t numel() const { return values_.numel(); }
  void zero_grad() { grads_.zero_(); }
  // Re-points every parameter's .grad at its slice of grads() (after anything replaced it).
  void bind_grads();

 private:
  std::vector<FlatEntry> entries_;
  std::vector<Bucket> buckets_;
  torch::Tensor values_, grads_;
};

// Norms (names ending in "norm.weight"), biases and learned quantization scales get no
// weight decay.
bool is_decayed(const std::string& name);

}  // namespace qtrain::trainer
