// PCRE2 wrapper. Oniguruma's Unicode classes follow the JavaScript port of Hugging Face
// tokenizers (tokenizers.js, "Regex compatibility"), which matched them against Oniguruma.
#include "data/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "common/error.h"
#include "data/utf8.h"

namespace qtrain::data {
namespace {

// Oniguruma's \w: Alphabetic, marks, decimal digits, connector punctuation, and the Latin-1
// digits-like symbols ² ³ ¹ ¼ ½ ¾ that its ctype tables count as word characters.
constexpr const char* kWordItems = R"(\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{B2}\x{B3}\x{B9}\x{BC}-\x{BE})";
constexpr const char* kSpaceItem = R"(\p{White_Space})";
constexpr const char* kNonSpaceItem = R"(\P{White_Space})";
constexpr const char* kHexItems = "0-9A-Fa-f";

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof(buffer));
  return reinterpret_cast<const char*>(buffer);
}

}  // namespace

std::string translate_oniguruma(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 32);
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char e = p[++i];
      if (e == 's') {
        out += kSpaceItem;  // a property item is valid inside and outside a class
      } else if (e == 'S') {
        out += kNonSpaceItem;
      } else if (e == 'w') {
        out += in_class ? std::string(kWordItems) : "[" + std::string(kWordItems) + "]";
      } else if (e == 'W' && !in_class) {
        out += "[^" + std::string(kWordItems) + "]";
      } else if (e == 'h') {
        out += in_class ? std::string(kHexItems) : "[" + std::string(kHexItems) + "]";
      } else if (e == 'H' && !in_class) {
        out += "[^" + std::string(kHexItems) + "]";
      } else if ((e == 'W' || e == 'H') && in_class) {
        throw Error(std::string("regex uses \\") + e + " inside a character class, which PCRE2 cannot express")
            .expected("a pattern without negated shorthands inside [...]");
      } else {
        out += '\\';
        out += e;
      }
      continue;
    }
    if (in_class) {
      if (c == '[' && !(i + 1 < p.size() && p[i + 1] == ':'))
        throw Error("regex nests a character class, an Oniguruma construct PCRE2 lacks")
            .expected("flat character classes");
      if (c == '&' && i + 1 < p.size() && p[i + 1] == '&')
        throw Error("regex intersects character classes (&&), an Oniguruma construct PCRE2 lacks")
            .expected("flat character classes");
      if (c == '[') {  // POSIX class [:alpha:], copied through to its closing ":]"
        const size_t close = p.find(":]", i + 2);
        if (close == std::string_view::npos) throw Error("unterminated POSIX class in regex");
        out.append(p.substr(i, close + 2 - i));
        i = close + 1;
        continue;
      }
      if (c == ']') in_class = false;
      out += c;
      continue;
    }
    if (c == '[') {
      in_class = true;
      out += c;
      // A ']' or '^]' right after '[' is a literal member, not the end.
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      continue;
    }
    out += c;
  }
  return out;
}

struct Regex::Code {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Code() { pcre2_code_free(code); }
};

Regex::Regex(const std::string& pattern, Syntax syntax) : pattern_(pattern), code_(std::make_unique<Code>()) {
  const std::string translated = syntax == Syntax::literal ? pattern : translate_oniguruma(pattern);
  // Ruby syntax, which the onig crate uses: ^ and $ are line anchors and '.' stops at "\n".
  uint32_t options = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
  options |= syntax == Syntax::literal ? PCRE2_LITERAL : (PCRE2_UCP | PCRE2_MULTILINE);
  pcre2_compile_context* context = pcre2_compile_context_create(nullptr);
  pcre2_set_newline(context, PCRE2_NEWLINE_LF);
  int error = 0;
  PCRE2_SIZE offset = 0;
  code_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(), options, &error,
                              &offset, context);
  pcre2_compile_context_free(context);
  if (!code_->code)
    throw Error("cannot compile regex /" + pattern + "/ at offset " + std::to_string(offset) + ": " +
                pcre2_message(error));
  code_->jit = pcre2_jit_compile(code_->code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() = default;
Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;

namespace {

// One match attempt; retries with a large JIT stack when the default 32 KiB one is too small
// (long runs of one character class).
int match_once(const pcre2_code* code, bool jit, std::string_view subject, size_t start, pcre2_match_data* data) {
  const auto* text = reinterpret_cast<PCRE2_SPTR>(subject.data());
  int rc = jit ? pcre2_jit_match(code, text, subject.size(), start, 0, data, nullptr)
               : pcre2_match(code, text, subject.size(), start, 0, data, nullptr);
  if (rc != PCRE2_ERROR_JIT_STACKLIMIT) return rc;
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(1 << 20, 256 << 20, nullptr);
  pcre2_jit_stack_assign(context, nullptr, stack);
  rc = pcre2_jit_match(code, text, subject.size(), start, 0, data, context);
  pcre2_jit_stack_free(stack);
  pcre2_match_context_free(context);
  return rc;
}

}  // namespace

void Regex::find_all(std::string_view subject, std::vector<Span>* matches) const {
  pcre2_match_data* data = pcre2_match_data_create_from_pattern(code_->code, nullptr);
  size_t start = 0;
  while (start <= subject.size()) {
    const int rc = match_once(code_->code, code_->jit, subject, start, data);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      pcre2_match_data_free(data);
      throw Error("regex /" + pattern_ + "/ failed: " + pcre2_message(rc));
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data);
    const size_t begin = ovector[0], end = ovector[1];
    if (end > begin) {
      matches->push_back({begin, end});
      start = end;
    } else {
      // An empty match yields nothing; step over one code point (or one ill-formed byte).
      if (begin >= subject.size()) break;
      const size_t n = utf8::sequence_length(subject, begin);
      start = begin + (n ? n : 1);
    }
  }
  pcre2_match_data_free(data);
}

}  // namespace qtrain::data
