// The pre-tokenizer of a byte-level BPE tokenizer.json, as Hugging Face tokenizers runs it
// (pre_tokenizers/split.rs, byte_level.rs, sequence.rs): zero or more Split steps, then one
// ByteLevel step. It cuts a piece of text into the words that BPE encodes one by one.
#pragma once
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "data/regex.h"

namespace qtrain::data {

// GPT-2's pattern, which ByteLevel splits with when use_regex is on.
inline constexpr const char* kGpt2SplitPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// What happens to the pattern's matches (tokenizers' SplitDelimiterBehavior).
enum class SplitBehavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };
// The behaviour's name in tokenizer.json ("Isolated", ...).
const char* behavior_name(SplitBehavior behavior);

struct SplitStep {
  std::string pattern;
  bool literal = false;  // {"String": ...} in tokenizer.json rather than {"Regex": ...}
  SplitBehavior behavior = SplitBehavior::isolated;
  bool invert = false;
};

struct ByteLevelStep {
  bool add_prefix_space = false;  // prepend " " to a piece that does not start with one
  bool use_regex = true;          // split with kGpt2SplitPattern
};

struct PreTokenizerSpec {
  std::vector<SplitStep> splits;  // applied in order, before the ByteLevel step
  ByteLevelStep byte_level;
};

// One pattern split: the pieces of `text` (byte ranges) that `behavior` keeps, in order,
// none empty. Exposed for tests.
void split_with_behavior(const Regex& regex, SplitBehavior behavior, bool invert, std::string_view text,
                         std::vector<Span>* pieces);

class PreTokenizer {
 public:
  explicit PreTokenizer(const PreTokenizerSpec& spec);

  // Calls on_word for each word of `piece`, in order. Words are raw text (not yet mapped to the
  // byte-level alphabet) and live until on_word returns. Thread-safe.
  void for_each_word(std::string_view piece, const std::function<void(std::string_view)>& on_word) const;

 private:
  void run_split(size_t step, std::string_view text, const std::function<void(std::string_view)>& on_word) const;
  void run_byte_level(std::string_view text, const std::function<void(std::string_view)>& on_word) const;

  std::vector<SplitStep> steps_;
  std::vector<Regex> regexes_;  // one per step
  ByteLevelStep byte_level_;
  Regex gpt2_;
};

}  // namespace qtrain::data
