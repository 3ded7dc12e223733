// "Did you mean ...?" for misspelled config keys: the closest valid key by edit distance.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace qtrain::config {

// Levenshtein distance (insertions, deletions, substitutions), case-insensitive.
std::size_t edit_distance(const std::string& a, const std::string& b);

// The candidate nearest to `word`, or "" when none is close enough to be a plausible typo.
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace qtrain::config
