// NFC through utf8proc (https://juliastrings.github.io/utf8proc/), a small, well-kept Unicode library.
#include "data/normalizer.h"

#include <utf8proc.h>

#include <cstdlib>

namespace qtrain::data {

bool normalization_is_identity(Normalizer normalizer, std::string_view text) {
  if (normalizer == Normalizer::none) return true;
  for (char c : text)
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  return true;
}

std::string normalize(Normalizer normalizer, std::string_view text) {
  if (normalization_is_identity(normalizer, text)) return std::string(text);
  utf8proc_uint8_t* result = nullptr;
  const auto options = static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE);
  const utf8proc_ssize_t length = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                               static_cast<utf8proc_ssize_t>(text.size()), &result, options);
  if (length < 0) return std::string(text);
  std::string out(reinterpret_cast<const char*>(result), static_cast<size_t>(length));
  std::free(result);
  return out;
}

}  // namespace qtrain::data
