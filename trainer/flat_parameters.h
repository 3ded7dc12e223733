// The trainable parameters of the student, re-homed into one contiguous fp32 buffer, with
// their gradients as views of a second buffer of the same layout (as Megatron's contiguous
// grad buffer and DDP's gradient_as_bucket_view). The optimizer then updates a few large
// tensors instead of hundreds of small ones, and the gradient all-reduce sends contiguous
// buckets without copies. Layout: parameters in reverse registration order (the order in
// which backward produces their gradients), each padded to 64 elements. Sharded over
// `shards` ranks (ZeRO, Rajbhandari et al. 2020) each bucket is padded further to a multiple
// of 64 x shards elements, so it splits into `shards` equal, aligned segments
// (collective.h); rank r owns segment r of every bucket. What a rank stores:
//   stage 0, 1: every value and every gradient (stage 1 shards only the AdamW moments);
//   stage 2:    every value; gradients only of its segments ("owned" storage, below);
//   stage 3:    values and gradients only of its segments; a bucket never spans two units
//               (a decoder layer, or the rest of the model), so that a unit's weights are
//               gathered by whole buckets (trainer/sharded_model.h). The parameters are
//               left as they are, for the sharded model to re-bind; they may be a
//               skeleton's, without memory, whose values come through fill().
// Owned storage lays rank r's segments one after another, in bucket order; values_at() and
// grads_at() translate a range of the flat (global) layout into it.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace qtrain::trainer {

struct FlatEntry {
  std::string name;
  torch::Tensor param;  // the module's parameter (stage < 3: a view of `values`)
  int64_t offset = 0;   // in elements, in the flat layout
  int64_t numel = 0;
  bool decay = true;    // weight decay applies (not to norms and biases)
};

struct Bucket {
  int64_t begin = 0, end = 0;      // element range of the flat layout
  std::vector<size_t> entries;     // indices into entries()
  int unit = 0;                    // stage 3: the unit it belongs to (FlatOptions::unit_of)
  int64_t segment() const { return end - begin; }  // callers divide by shards
};

struct FlatRange {
  int64_t begin = 0, end = 0;  // elements [begin, end) of the flat layout
  int64_t size() const { return end - begin; }
};

// The part of one parameter in this rank's segment: elements [param_begin, param_begin +
// length) of the flattened parameter, at flat position flat_begin (length 0: none of it).
struct OwnedPiece {
  int64_t param_begin = 0, flat_begin = 0, length = 0;
};

struct FlatOptions {
  int64_t bucket_bytes = 25 << 20;  // consecutive entries per bucket (at stage 3, within a unit)
  int shards = 1;                   // ranks that share the state, 1 = not sharded
  int rank = 0;                     // which segment this rank owns
  int zero_stage = 0;               // what the rank stores (above)
  // Stage 3: which unit a parameter belongs to; buckets start anew where it changes.
  std::function<int(const std::string&)> unit_of;
  bool with_grads = true;           // false: frozen parameters (a sharded teacher)
  // Stage 3: the owned storage (values and gradients, and so the AdamW moments) in host
  // memory, pinned where the parameters are on a GPU (ZeRO-Offload).
  bool offload = false;
};

class FlatParameters {
 public:
  // `params` in registration order (named_parameters()); all of one floating dtype on one
  // device (fp32 for trainable ones).
  FlatParameters(const std::vector<std::pair<std::string, torch::Tensor>>& params, FlatOptions options);
  // Stages 0 and 1, as before ZeRO-2 existed.
  FlatParameters(const std::vector<std::pair<std::string, torch::Tensor>>& params, int64_t bucket_bytes,
                 int shards = 1);

  const std::vector<FlatEntry>& entries() const { return entries_; }
  const std::vector<Bucket>& buckets() const { return buckets_; }
  // The stored buffers: the whole flat layout, or this rank's segments (owned storage).
  torch::Tensor& values() { return values_; }
  torch::Tensor& grads() { return grads_; }
  int64_t numel() const { return total_; }  // elements of the whole flat layout
  int shards() const { return options_.shards; }
  int rank() const { return options_.rank; }
  int zero_stage() const { return options_.zero_stage; }
  // Where the parameters (and the gathered units) live, and where the stored buffers do:
  // the host with offload, else the same device.
  torch::Device device() const { return device_; }
  torch::Device storage_device() const { return values_.device(); }
  bool owns_values_only() const { return options_.zero_stage >= 3; }
  bool owns_grads_only() const { return options_.zero_stage >= 2; }
  // What rank `rank` updates: segment `rank` of every bucket, in bucket order, adjacent
  // ranges merged (unsharded: one range, the whole buffer).
  std::vector<FlatRange> owned_ranges(int rank) const;
  // This rank's segment of bucket `b` in the flat layout.
  FlatRange owned_segment(size_t b) const;
  // What this rank owns of parameter `name` (an entry lies in one bucket, so in at most one
  // owned segment); nullopt when no entry has that name.
  std::optional<OwnedPiece> owned_piece(const std::string& name) const;
  const FlatEntry* entry(const std::string& name) const;  // null when none has that name
  // Views of `length` stored elements from flat position `begin` (within one owned segment
  // when the storage is owned).
  torch::Tensor values_at(int64_t begin, int64_t length);
  torch::Tensor grads_at(int64_t begin, int64_t length);
  // Stores what this rank keeps of `value`, the full value of parameter `name` (any dtype
  // and device; only the owned piece is read). At stage 3 this is how the parameters of a
  // skeleton (model::Skeleton, which the constructor skips) get their values, one at a time.
  void fill(const std::string& name, const torch::Tensor& value);
  void zero_grad();
  // Re-points every parameter's .grad at its slice of grads() (after anything replaced it);
  // with owned gradient storage, clears them instead (GradSync packs them per bucket).
  void bind_grads();

 private:
  int64_t stored_offset(int64_t begin, int64_t length, bool whole) const;
  FlatOptions options_;
  std::vector<FlatEntry> entries_;
  std::vector<Bucket> buckets_;
  std::vector<int64_t> owned_begin_;  // per bucket: where its owned segment starts in owned storage
  std::map<std::string, std::pair<size_t, size_t>> by_name_;  // name -> entry, bucket
  int64_t total_ = 0;
  torch::Device device_ = torch::kCPU;
  torch::Tensor values_, grads_;
};

// Norms (names ending in "norm.weight"), biases and learned quantization scales get no
// weight decay.
bool is_decayed(const std::string& name);

}  // namespace qtrain::trainer
