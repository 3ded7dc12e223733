// Feistel permutation over [0, 2^(2h)) with cycle walking into [0, num_samples).
#include "data/sample_order.h"

#include "common/error.h"

namespace qtrain::data {

namespace {

// splitmix64's finaliser: a well-mixed 64-bit hash (Steele et al. 2014).
uint64_t mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

constexpr int kRounds = 6;

}  // namespace

SampleOrder::SampleOrder(int64_t num_tokens, int64_t seq_len, uint64_t seed, bool shuffle)
    : num_samples_(num_tokens > seq_len ? (num_tokens - 1) / seq_len : 0),
      seq_len_(seq_len),
      seed_(seed),
      shuffle_(shuffle) {
  QT_REQUIRE(seq_len >= 1, "sample length must be positive");
  while ((uint64_t{1} << (2 * half_bits_)) < static_cast<uint64_t>(num_samples_)) ++half_bits_;
}

uint64_t SampleOrder::permute(uint64_t key, uint64_t x) const {
  const uint64_t mask = (uint64_t{1} << half_bits_) - 1;
  uint64_t left = x >> half_bits_, right = x & mask;
  for (int round = 0; round < kRounds; ++round) {
    const uint64_t next = left ^ (mix(key ^ mix(right + static_cast<uint64_t>(round))) & mask);
    left = right;
    right = next;
  }
  return (left << half_bits_) | right;
}

int64_t SampleOrder::sample_at(int64_t epoch, int64_t position) const {
  QT_REQUIRE(position >= 0 && position < num_samples_, "sample position out of range");
  if (!shuffle_) return position;
  const uint64_t key = mix(seed_ ^ mix(static_cast<uint64_t>(epoch)));
  // Cycle walking: the domain is less than 4x num_samples, so this ends in a few steps on
  // average, and it is a bijection on [0, num_samples) because permute is one on the domain.
  uint64_t x = static_cast<uint64_t>(position);
  do x = permute(key, x);
  while (x >= static_cast<uint64_t>(num_samples_));
  return static_cast<int64_t>(x);
}

}  // namespace qtrain::data
