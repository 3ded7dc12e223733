// xxHash is used header-only (XXH_INLINE_ALL): nothing to link, nothing to ship at run time.
#include "data/fingerprint.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cstdio>

namespace qtrain::data {

struct FingerprintBuilder::State {
  XXH3_state_t xxh;
};

FingerprintBuilder::FingerprintBuilder(std::string_view kind) : state_(std::make_unique<State>()) {
  XXH3_128bits_reset(&state_->xxh);
  add(kind);
}

FingerprintBuilder::~FingerprintBuilder() = default;

FingerprintBuilder& FingerprintBuilder::add(std::string_view field) {
  const uint64_t length = field.size();
  unsigned char prefix[8];
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<unsigned char>(length >> (8 * i));
  XXH3_128bits_update(&state_->xxh, prefix, sizeof(prefix));
  XXH3_128bits_update(&state_->xxh, field.data(), field.size());
  return *this;
}

FingerprintBuilder& FingerprintBuilder::add_int(int64_t value) { return add(std::to_string(value)); }

std::string FingerprintBuilder::finish() {
  const XXH128_hash_t hash = XXH3_128bits_digest(&state_->xxh);
  char hex[33];
  std::snprintf(hex, sizeof(hex), "%016llx%016llx", static_cast<unsigned long long>(hash.high64),
                static_cast<unsigned long long>(hash.low64));
  return std::string("xxh3-128:") + hex;
}

}  // namespace qtrain::data
