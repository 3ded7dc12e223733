// The regexes of tokenizer.json pre-tokenizers, compiled with PCRE2 (UTF, UCP, JIT).
// tokenizer.json patterns are written for Oniguruma (what Hugging Face tokenizers runs them
// with); translate_oniguruma() rewrites the few constructs whose meaning differs in PCRE2.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qtrain::data {

// A byte range [begin, end) of a subject string.
struct Span {
  size_t begin = 0, end = 0;
};

// Rewrites an Oniguruma (Ruby syntax) pattern into PCRE2 syntax with the same meaning:
// \s \S -> White_Space (PCRE2 10.42's \s lacks U+0085), \w \W -> Oniguruma's word set,
// \h \H -> hex digits (PCRE2's \h is horizontal space). Throws qtrain::Error for Oniguruma
// class syntax PCRE2 lacks (nested classes, && intersections).
std::string translate_oniguruma(std::string_view pattern);

class Regex {
 public:
  enum class Syntax { oniguruma, literal };
  // Compiles `pattern` (an Oniguruma regex, or a literal string); throws qtrain::Error.
  Regex(const std::string& pattern, Syntax syntax);
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends the non-overlapping, non-empty matches in `subject`, left to right, as
  // Oniguruma's find_iter gives them. Thread-safe. Ill-formed UTF-8 in the subject never
  // matches (PCRE2_MATCH_INVALID_UTF).
  void find_all(std::string_view subject, std::vector<Span>* matches) const;

  const std::string& pattern() const { return pattern_; }

 private:
  struct Code;
  std::string pattern_;
  std::unique_ptr<Code> code_;
};

}  // namespace qtrain::data
