// Added tokens (tokenizer.json's "added_tokens": special tokens such as <|endoftext|> and any
// tokens added after training). They are cut out of the text before pre-tokenization, as
// tokenizers/src/tokenizer/added_vocabulary.rs does: leftmost-longest matching, with the
// single_word, lstrip, rstrip and normalized options.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace qtrain::data {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool single_word = false;  // match only where no word character touches either end
  bool lstrip = false;       // take the white space before the match into the token
  bool rstrip = false;       // take the white space after the match into the token
  bool normalized = true;    // match against normalized text (else against the raw text)
  bool special = false;      // only recorded: decode() keeps special tokens
};

class AddedVocabulary {
 public:
  // `normalize` gives the form that tokens with normalized=true are matched in.
  AddedVocabulary(std::vector<AddedToken> tokens, const std::function<std::string(std::string_view)>& normalize);

  // A part of the text: an added token (id >= 0) or the text between them (id == -1).
  struct Segment {
    size_t begin = 0, end = 0;
    int32_t id = -1;
  };
  // Raw: tokens with normalized=false, matched before normalization; normalized: the others.
  enum class Pass { raw, normalized };

  // Cuts `text` into segments that cover it, in order (empty text gives none).
  void split(std::string_view text, Pass pass, std::vector<Segment>* segments) const;

  bool has_tokens(Pass pass) const { return !tries_[static_cast<int>(pass)].nodes.empty(); }
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  // A byte trie over the token contents of one pass; node 0 is the root.
  struct Trie {
    struct Node {
      std::vector<std::pair<unsigned char, int32_t>> next;
      int32_t token = -1;  // index into tokens_ of the token ending here
    };
    std::vector<Node> nodes;
    std::array<bool, 256> starts{};  // bytes some token begins with
    void insert(std::string_view content, int32_t token);
    // Length of the longest token at text[pos] and its index, or 0.
    size_t longest_at(std::string_view text, size_t pos, int32_t* token) const;
  };

  std::vector<AddedToken> tokens_;
  std::array<Trie, 2> tries_;
};

}  // namespace qtrain::data
