// Added-token matching. Word and space characters are those of Rust's regex crate, which
// added_vocabulary.rs tests with \w and \s: word = Alphabetic, marks, Nd, Pc, Join_Control
// (general categories from utf8proc); space = White_Space.
#include "data/added_vocabulary.h"

#include <utf8proc.h>

#include <algorithm>

#include "data/utf8.h"

namespace qtrain::data {
namespace {

bool is_word_char(char32_t cp) {
  if (cp == '_' || cp == 0x200C || cp == 0x200D) return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return false;
  }
}

// The code point that ends text[..end], or -1 if ill-formed; *begin gets its first byte.
int64_t last_char(std::string_view text, size_t end, size_t* begin) {
  size_t b = end;
  while (b > 0 && end - b < 4) {
    --b;
    if ((static_cast<unsigned char>(text[b]) & 0xC0) != 0x80) break;
  }
  const size_t n = utf8::sequence_length(text, b);
  if (n == 0 || b + n != end) return -1;
  *begin = b;
  return utf8::decode(text, b, n);
}

// The code point that starts text[begin..], or -1; *length gets its byte length.
int64_t first_char(std::string_view text, size_t begin, size_t* length) {
  *length = utf8::sequence_length(text, begin);
  return *length ? static_cast<int64_t>(utf8::decode(text, begin, *length)) : -1;
}

// Where the run of white space that ends text[..end] begins (regex \s*$).
size_t white_space_run_start(std::string_view text, size_t end) {
  size_t begin = 0;
  while (end > 0) {
    const int64_t cp = last_char(text, end, &begin);
    if (cp < 0 || !utf8::is_white_space(static_cast<char32_t>(cp))) break;
    end = begin;
  }
  return end;
}

// Where the run of white space that starts text[begin..] ends (regex ^\s*).
size_t white_space_run_end(std::string_view text, size_t begin) {
  size_t length = 0;
  while (begin < text.size()) {
    const int64_t cp = first_char(text, begin, &length);
    if (cp < 0 || !utf8::is_white_space(static_cast<char32_t>(cp))) break;
    begin += length;
  }
  return begin;
}

}  // namespace

void AddedVocabulary::Trie::insert(std::string_view content, int32_t token) {
  if (nodes.empty()) nodes.emplace_back();
  int32_t node = 0;
  for (char c : content) {
    const auto byte = static_cast<unsigned char>(c);
    auto& next = nodes[node].next;
    auto it = std::find_if(next.begin(), next.end(), [&](const auto& e) { return e.first == byte; });
    if (it != next.end()) {
      node = it->second;
    } else {
      const auto child = static_cast<int32_t>(nodes.size());
      nodes[node].next.emplace_back(byte, child);
      nodes.emplace_back();
      node = child;
    }
  }
  if (nodes[node].token < 0) nodes[node].token = token;  // the first of equal contents wins
  starts[static_cast<unsigned char>(content[0])] = true;
}

size_t AddedVocabulary::Trie::longest_at(std::string_view text, size_t pos, int32_t* token) const {
  size_t best = 0;
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    const auto& next = nodes[node].next;
    auto it = std::find_if(next.begin(), next.end(), [&](const auto& e) { return e.first == byte; });
    if (it == next.end()) break;
    node = it->second;
    if (nodes[node].token >= 0) {
      best = i + 1 - pos;
      *token = nodes[node].token;
    }
  }
  return best;
}

AddedVocabulary::AddedVocabulary(std::vector<AddedToken> tokens,
                                 const std::function<std::string(std::string_view)>& normalize)
    : tokens_(std::move(tokens)) {
  // tokenizers builds its matchers from the special tokens first, then the other added tokens.
  std::vector<int32_t> order(tokens_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
  std::stable_partition(order.begin(), order.end(), [&](int32_t i) { return tokens_[i].special; });
  for (int32_t i : order) {
    const AddedToken& t = tokens_[i];
    if (t.content.empty()) continue;  // tokenizers ignores empty tokens
    if (t.normalized) {
      const std::string content = normalize(t.content);
      if (!content.empty()) tries_[static_cast<int>(Pass::normalized)].insert(content, i);
    } else {
      tries_[static_cast<int>(Pass::raw)].insert(t.content, i);
    }
  }
}

void AddedVocabulary::split(std::string_view text, Pass pass, std::vector<Segment>* segments) const {
  const Trie& trie = tries_[static_cast<int>(pass)];
  if (text.empty()) return;
  if (trie.nodes.empty()) {
    segments->push_back({0, text.size(), -1});
    return;
  }
  size_t start_offset = 0;  // end of the last segment written
  size_t pos = 0;
  while (pos < text.size()) {
    int32_t index = -1;
    const size_t length = trie.starts[static_cast<unsigned char>(text[pos])] ? trie.longest_at(text, pos, &index) : 0;
    if (length == 0) {
      ++pos;
      continue;
    }
    const AddedToken& token = tokens_[index];
    size_t start = pos, stop = pos + length;
    pos = stop;  // matching resumes after the match, used or not (aho-corasick's find_iter)
    if (token.single_word) {
      size_t unused = 0;
      const int64_t before = start == 0 ? -1 : last_char(text, start, &unused);
      const int64_t after = stop == text.size() ? -1 : first_char(text, stop, &unused);
      if ((before >= 0 && is_word_char(static_cast<char32_t>(before))) ||
          (after >= 0 && is_word_char(static_cast<char32_t>(after))))
        continue;
    }
    if (token.lstrip) start = std::max(white_space_run_start(text, start), start_offset);
    if (token.rstrip) stop = white_space_run_end(text, stop);
    if (start_offset < start) segments->push_back({start_offset, start, -1});
    segments->push_back({start, stop, token.id});
    start_offset = stop;
  }
  if (start_offset < text.size()) segments->push_back({start_offset, text.size(), -1});
}

}  // namespace qtrain::data
