// The split rule of data/corpus_split.h (xxHash header-only, as data/fingerprint.cpp).
#include "data/corpus_split.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace qtrain::data {

bool in_validation_split(std::string_view text, double val_fraction) {
  const XXH64_hash_t hash = XXH3_64bits(text.data(), text.size());
  const double u = static_cast<double>(hash >> 11) * 0x1.0p-53;
  return u < val_fraction;
}

}  // namespace qtrain::data
