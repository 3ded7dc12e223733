// hash_bytes: XXH3-64 from xxHash, used header-only (XXH_INLINE_ALL).
#include "data/flat_hash.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace qtrain::data {

uint64_t hash_bytes(std::string_view bytes) {
  const uint64_t h = XXH3_64bits(bytes.data(), bytes.size());
  return h ? h : 1;
}

}  // namespace qtrain::data
