// The global order in which training samples are visited: sample i of a token stream is
// tokens [i*seq_len, i*seq_len + seq_len + 1) (inputs plus the next-token labels; neighbours
// share one token). Each epoch visits every sample once in a pseudo-random order that
// depends only on (seed, epoch), never on the number of ranks. The permutation is a keyed
// Feistel network with cycle walking: O(1) memory for any corpus size.
#pragma once
#include <cstdint>

namespace qtrain::data {

class SampleOrder {
 public:
  // `num_tokens` in the stream, samples of `seq_len` + 1 tokens; `shuffle` false keeps
  // file order (for evaluation and debugging).
  SampleOrder(int64_t num_tokens, int64_t seq_len, uint64_t seed, bool shuffle = true);

  int64_t num_samples() const { return num_samples_; }
  int64_t seq_len() const { return seq_len_; }
  // The sample visited at `position` (0 <= position < num_samples) of `epoch`.
  int64_t sample_at(int64_t epoch, int64_t position) const;
  // First token of a sample.
  int64_t token_offset(int64_t sample) const { return sample * seq_len_; }

 private:
  uint64_t permute(uint64_t key, uint64_t x) const;
  int64_t num_samples_, seq_len_;
  uint64_t seed_;
  bool shuffle_;
  int half_bits_ = 1;  // the Feistel domain is 2^(2*half_bits) >= num_samples
};

}  // namespace qtrain::data
