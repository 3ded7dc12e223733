// Split behaviours follow NormalizedString::split in tokenizers/src/tokenizer/normalizer.rs.
#include "data/pre_tokenizer.h"

namespace qtrain::data {

const char* behavior_name(SplitBehavior behavior) {
  switch (behavior) {
    case SplitBehavior::removed: return "Removed";
    case SplitBehavior::isolated: return "Isolated";
    case SplitBehavior::merged_with_previous: return "MergedWithPrevious";
    case SplitBehavior::merged_with_next: return "MergedWithNext";
    case SplitBehavior::contiguous: return "Contiguous";
  }
  return "?";
}

void split_with_behavior(const Regex& regex, SplitBehavior behavior, bool invert, std::string_view text,
                         std::vector<Span>* pieces) {
  if (text.empty()) return;
  std::vector<Span> matches;
  regex.find_all(text, &matches);
  // Cover the whole text with (range, is_match) segments, as Pattern::find_matches does.
  struct Segment {
    Span span;
    bool is_match;
  };
  std::vector<Segment> segments;
  segments.reserve(matches.size() * 2 + 1);
  size_t previous = 0;
  for (const Span& m : matches) {
    if (previous < m.begin) segments.push_back({{previous, m.begin}, invert});
    segments.push_back({m, !invert});
    previous = m.end;
  }
  if (previous < text.size()) segments.push_back({{previous, text.size()}, invert});

  switch (behavior) {
    case SplitBehavior::isolated:
      for (const auto& s : segments) pieces->push_back(s.span);
      return;
    case SplitBehavior::removed:
      for (const auto& s : segments)
        if (!s.is_match) pieces->push_back(s.span);
      return;
    case SplitBehavior::contiguous: {  // runs of matches, and runs of non-matches, become one piece
      const size_t first = pieces->size();
      bool previous_match = false;
      for (const auto& s : segments) {
        if (s.is_match == previous_match && pieces->size() > first) pieces->back().end = s.span.end;
        else pieces->push_back(s.span);
        previous_match = s.is_match;
      }
      return;
    }
    case SplitBehavior::merged_with_previous: {  // a match joins the piece before it
      const size_t first = pieces->size();
      bool previous_match = false;
      for (const auto& s : segments) {
        if (s.is_match && !previous_match && pieces->size() > first) pieces->back().end = s.span.end;
        else pieces->push_back(s.span);
        previous_match = s.is_match;
      }
      return;
    }
    case SplitBehavior::merged_with_next: {  // a match joins the piece after it
      std::vector<Span> reversed;
      bool next_match = false;
      for (auto it = segments.rbegin(); it != segments.rend(); ++it) {
        if (it->is_match && !next_match && !reversed.empty()) reversed.back().begin = it->span.begin;
        else reversed.push_back(it->span);
        next_match = it->is_match;
      }
      pieces->insert(pieces->end(), reversed.rbegin(), reversed.rend());
      return;
    }
  }
}

PreTokenizer::PreTokenizer(const PreTokenizerSpec& spec)
    : steps_(spec.splits), byte_level_(spec.byte_level), gpt2_(kGpt2SplitPattern, Regex::Syntax::oniguruma) {
  for (const auto& step : steps_)
    regexes_.emplace_back(step.pattern, step.literal ? Regex::Syntax::literal : Regex::Syntax::oniguruma);
}

void PreTokenizer::for_each_word(std::string_view piece,
                                 const std::function<void(std::string_view)>& on_word) const {
  if (piece.empty()) return;  // tokenizers drops empty splits
  run_split(0, piece, on_word);
}

void PreTokenizer::run_split(size_t step, std::string_view text,
                             const std::function<void(std::string_view)>& on_word) const {
  if (step == steps_.size()) {
    run_byte_level(text, on_word);
    return;
  }
  std::vector<Span> pieces;
  split_with_behavior(regexes_[step], steps_[step].behavior, steps_[step].invert, text, &pieces);
  for (const Span& p : pieces) run_split(step + 1, text.substr(p.begin, p.end - p.begin), on_word);
}

void PreTokenizer::run_byte_level(std::string_view text,
                                  const std::function<void(std::string_view)>& on_word) const {
  std::string prefixed;
  if (byte_level_.add_prefix_space && text.front() != ' ') {
    prefixed.reserve(text.size() + 1);
    prefixed += ' ';
    prefixed += text;
    text = prefixed;
  }
  if (!byte_level_.use_regex) {
    on_word(text);
    return;
  }
  std::vector<Span> pieces;
  split_with_behavior(gpt2_, SplitBehavior::isolated, false, text, &pieces);
  for (const Span& p : pieces) on_word(text.substr(p.begin, p.end - p.begin));
}

}  // namespace qtrain::data
