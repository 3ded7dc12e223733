// The encode pipeline of tokenizers' Tokenizer::encode (tokenizer/mod.rs) for one sequence,
// without offsets: AddedVocabulary::extract_and_normalize, pre_tokenize, BPE, post_process.
#include "data/hf_tokenizer.h"

#include <algorithm>

#include "common/error.h"
#include "data/byte_level.h"
#include "data/fingerprint.h"
#include "data/utf8.h"

namespace qtrain::data {

HfTokenizer::HfTokenizer(const HfTokenizerSpec& spec, const std::string& file)
    : normalizer_(spec.normalizer),
      pre_tokenizer_(spec.pre_tokenizer),
      model_(spec.model, file),
      added_(spec.added_tokens, [&](std::string_view text) { return normalize(spec.normalizer, text); }),
      fingerprint_(hf_fingerprint(spec)),
      cache_(kWordCacheCapacity) {
  source_ = file;
  special_prefix_ = spec.special_prefix;
  special_suffix_ = spec.special_suffix;
  int32_t max_id = model_.max_id();
  for (const auto& t : spec.added_tokens) max_id = std::max(max_id, t.id);
  token_bytes_.resize(static_cast<size_t>(max_id + 1));
  has_token_.assign(token_bytes_.size(), false);
  for (int32_t id = 0; id <= model_.max_id(); ++id) {
    if (const std::string* token = model_.id_to_token(id)) {
      token_bytes_[id] = byte_level::decode_token(*token);
      has_token_[id] = true;
    }
  }
  // An added token's content wins over the model's token of the same id, as in id_to_token.
  for (const auto& t : spec.added_tokens) {
    token_bytes_[t.id] = byte_level::decode_token(t.content);
    has_token_[t.id] = true;
  }
  for (const auto* ids : {&special_prefix_, &special_suffix_})
    for (int32_t id : *ids)
      if (id < 0 || id > max_id)
        throw Error("post-processor id " + std::to_string(id) + " has no token").file(file).key("post_processor");
  guess_bos_eos();
}

std::unique_ptr<HfTokenizer> HfTokenizer::load(const std::string& path) {
  return std::make_unique<HfTokenizer>(parse_tokenizer_json(read_json_file(path), path), path);
}

std::vector<int32_t> HfTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 8);
  std::vector<AddedVocabulary::Segment> raw, normalized;
  // Tokens matched on the raw text first; the rest is normalized, then searched for the others.
  added_.split(text, AddedVocabulary::Pass::raw, &raw);
  std::string normalized_text;
  for (const auto& segment : raw) {
    if (segment.id >= 0) {
      ids.push_back(segment.id);
      continue;
    }
    std::string_view piece = text.substr(segment.begin, segment.end - segment.begin);
    if (!normalization_is_identity(normalizer_, piece)) {
      normalized_text = normalize(normalizer_, piece);
      piece = normalized_text;
    }
    normalized.clear();
    added_.split(piece, AddedVocabulary::Pass::normalized, &normalized);
    for (const auto& part : normalized) {
      if (part.id >= 0) ids.push_back(part.id);
      else encode_piece(piece.substr(part.begin, part.end - part.begin), &ids);
    }
  }
  return ids;
}

void HfTokenizer::encode_piece(std::string_view piece, std::vector<int32_t>* ids) const {
  pre_tokenizer_.for_each_word(piece, [&](std::string_view word) { encode_word(word, ids); });
}

void HfTokenizer::encode_word(std::string_view word, std::vector<int32_t>* ids) const {
  if (cache_.lookup(word, ids)) return;
  const size_t first = ids->size();
  model_.encode_word(word, ids);
  cache_.insert(word, *ids, first);
}

std::string HfTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size())
      throw Error("token id " + std::to_string(id) + " is outside the vocabulary")
          .file(source_)
          .expected("0 <= id < " + std::to_string(vocab_size()));
    if (has_token_[id]) bytes += token_bytes_[id];  // ids without a token are skipped, as in tokenizers
  }
  return utf8::to_valid_lossy(bytes);
}

std::optional<int32_t> HfTokenizer::token_to_id(std::string_view token) const {
  for (const auto& t : added_.tokens())
    if (t.content == token) return t.id;
  return model_.token_to_id(token);
}

void HfTokenizer::guess_bos_eos() {
  // Without tokenizer_config.json: the post-processor's first id is the BOS; otherwise the
  // usual special-token names of the Llama, Qwen and GPT-2 families.
  auto first_special = [&](std::initializer_list<const char*> names) -> std::optional<int32_t> {
    for (const char* name : names)
      for (const auto& t : added_.tokens())
        if (t.special && t.content == name) return t.id;
    return std::nullopt;
  };
  bos_id_ = special_prefix_.empty() ? first_special({"<|begin_of_text|>", "<s>", "<bos>"})
                                    : std::optional<int32_t>(special_prefix_.front());
  eos_id_ = first_special({"<|end_of_text|>", "<|endoftext|>", "</s>", "<eos>"});
}

void HfTokenizer::apply_tokenizer_config(const nlohmann::json& config, const std::string& file) {
  if (!config.is_object()) throw Error("tokenizer_config.json is not a JSON object").file(file);
  for (const char* key : {"bos_token", "eos_token"}) {
    auto it = config.find(key);
    if (it == config.end()) continue;
    std::optional<int32_t>& target = std::string(key) == "bos_token" ? bos_id_ : eos_id_;
    std::string name;
    if (it->is_null()) {
      target.reset();
      continue;
    } else if (it->is_string()) {
      name = it->get<std::string>();
    } else if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
      name = (*it)["content"].get<std::string>();
    } else {
      throw Error("is neither a token, an object with \"content\", nor null").file(file).key(key);
    }
    target = token_to_id(name);
    if (!target) throw Error("token '" + name + "' is not in the tokenizer's vocabulary").file(file).key(key);
  }
}

std::string hf_fingerprint(const HfTokenizerSpec& spec) {
  FingerprintBuilder f("qtrain-tokenizer/hf-byte-level-bpe/v1");
  f.add("normalizer").add(spec.normalizer == Normalizer::nfc ? "NFC" : "none");
  f.add("pre_tokenizer").add_int(static_cast<int64_t>(spec.pre_tokenizer.splits.size()));
  for (const auto& s : spec.pre_tokenizer.splits)
    f.add(s.literal ? "String" : "Regex").add(s.pattern).add(behavior_name(s.behavior)).add_int(s.invert);
  f.add_int(spec.pre_tokenizer.byte_level.add_prefix_space).add_int(spec.pre_tokenizer.byte_level.use_regex);
  const BpeSpec& m = spec.model;
  f.add("model").add_int(m.ignore_merges).add_int(m.unk_token.has_value()).add(m.unk_token.value_or(""));
  f.add_int(m.fuse_unk);
  auto vocab = m.vocab;
  std::sort(vocab.begin(), vocab.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second < b.second : a.first < b.first;
  });
  f.add_int(static_cast<int64_t>(vocab.size()));
  for (const auto& [token, id] : vocab) f.add_int(id).add(token);
  f.add_int(static_cast<int64_t>(m.merges.size()));
  for (const auto& [left, right] : m.merges) f.add(left).add(right);
  auto added = spec.added_tokens;
  std::stable_sort(added.begin(), added.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  f.add("added_tokens").add_int(static_cast<int64_t>(added.size()));
  for (const auto& t : added)
    f.add_int(t.id).add(t.content).add_int(t.single_word).add_int(t.lstrip).add_int(t.rstrip).add_int(t.normalized)
        .add_int(t.special);
  f.add("post_processor").add_int(static_cast<int64_t>(spec.special_prefix.size()));
  for (int32_t id : spec.special_prefix) f.add_int(id);
  f.add_int(static_cast<int64_t>(spec.special_suffix.size()));
  for (int32_t id : spec.special_suffix) f.add_int(id);
  return f.finish();
}

}  // namespace qtrain::data
