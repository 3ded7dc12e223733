// The train/validation split of qdata: a document goes to validation when a hash of its
// text falls below the fraction. Deterministic (no seed, no thread or file order in it), and
// identical documents always land in the same split, so duplicates cannot leak from
// training into validation.
#pragma once
#include <string_view>

namespace qtrain::data {

// True if the document belongs to the validation split for `val_fraction` in [0, 1]:
// XXH3-64 (seed 0) of the text's bytes, top 53 bits as u in [0, 1), and u < val_fraction.
bool in_validation_split(std::string_view text, double val_fraction);

}  // namespace qtrain::data
