// tokenizer.json parsing. Each section (normalizer, pre_tokenizer, model, added_tokens,
// post_processor) has its own function; keys in errors are written as JSON paths.
#include "data/tokenizer_json.h"

#include <fstream>
#include <sstream>

#include "common/error.h"

namespace qtrain::data {
namespace {

using nlohmann::json;

// Context for one file: builds errors that name it.
struct Reader {
  const std::string& file;
  Error error(const std::string& key, const std::string& what) const { return Error(what).file(file).key(key); }

  const json& member(const json& object, const std::string& name, const std::string& key) const {
    if (!object.is_object()) throw error(key, "is not a JSON object");
    auto it = object.find(name);
    if (it == object.end()) throw error(key + "." + name, "is missing");
    return *it;
  }
  std::string string_member(const json& object, const std::string& name, const std::string& key) const {
    const json& v = member(object, name, key);
    if (!v.is_string()) throw error(key + "." + name, "is not a string");
    return v.get<std::string>();
  }
  bool bool_member(const json& object, const std::string& name, const std::string& key, bool fallback) const {
    auto it = object.find(name);
    if (it == object.end() || it->is_null()) return fallback;
    if (!it->is_boolean()) throw error(key + "." + name, "is not true or false");
    return it->get<bool>();
  }
  std::string type_of(const json& object, const std::string& key) const {
    return string_member(object, "type", key);
  }
  // A token id: an integer in [0, kMaxTokenId). The bound keeps a forged id from sizing the
  // id -> token table (a vocabulary is stored densely up to its largest id); the largest
  // real vocabularies hold about a million ids.
  int32_t token_id(const json& id, const std::string& key) const {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= kMaxTokenId)
      throw error(key, "is not a token id: " + id.dump()).expected("an integer in [0, " + std::to_string(kMaxTokenId) + ")");
    return static_cast<int32_t>(id.get<int64_t>());
  }
  static constexpr int64_t kMaxTokenId = int64_t{1} << 24;
};

std::string indexed(const std::string& key, size_t i) { return key + "[" + std::to_string(i) + "]"; }

Normalizer parse_normalizer(const Reader& r, const json& j, const std::string& key) {
  if (j.is_null()) return Normalizer::none;
  const std::string type = r.type_of(j, key);
  if (type == "NFC") return Normalizer::nfc;
  if (type == "Sequence") {
    const json& list = r.member(j, "normalizers", key);
    if (!list.is_array()) throw r.error(key + ".normalizers", "is not an array");
    Normalizer result = Normalizer::none;
    for (size_t i = 0; i < list.size(); ++i)
      if (parse_normalizer(r, list[i], indexed(key + ".normalizers", i)) == Normalizer::nfc) result = Normalizer::nfc;
    return result;
  }
  throw r.error(key + ".type", "unsupported normalizer '" + type + "'").expected("NFC, Sequence of NFC, or null");
}

SplitBehavior parse_behavior(const Reader& r, const json& j, const std::string& key) {
  const std::string b = r.string_member(j, "behavior", key);
  if (b == "Removed") return SplitBehavior::removed;
  if (b == "Isolated") return SplitBehavior::isolated;
  if (b == "MergedWithPrevious") return SplitBehavior::merged_with_previous;
  if (b == "MergedWithNext") return SplitBehavior::merged_with_next;
  if (b == "Contiguous") return SplitBehavior::contiguous;
  throw r.error(key + ".behavior", "unknown split behavior '" + b + "'")
      .expected("Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous");
}

// Appends the steps of one pre-tokenizer (flattening Sequences); `seen_byte_level` is set
// once the ByteLevel step has been read, which must be the last one.
void parse_pre_tokenizer(const Reader& r, const json& j, const std::string& key, PreTokenizerSpec* spec,
                         bool* seen_byte_level) {
  const std::string type = r.type_of(j, key);
  if (type == "Sequence") {
    const json& list = r.member(j, "pretokenizers", key);
    if (!list.is_array()) throw r.error(key + ".pretokenizers", "is not an array");
    for (size_t i = 0; i < list.size(); ++i)
      parse_pre_tokenizer(r, list[i], indexed(key + ".pretokenizers", i), spec, seen_byte_level);
    return;
  }
  if (*seen_byte_level)
    throw r.error(key + ".type", "'" + type + "' follows the ByteLevel step").expected("ByteLevel as the last step");
  if (type == "ByteLevel") {
    spec->byte_level.add_prefix_space = r.bool_member(j, "add_prefix_space", key, true);
    spec->byte_level.use_regex = r.bool_member(j, "use_regex", key, true);
    *seen_byte_level = true;
    return;
  }
  if (type == "Split") {
    SplitStep step;
    const json& pattern = r.member(j, "pattern", key);
    if (pattern.is_object() && pattern.contains("Regex") && pattern["Regex"].is_string()) {
      step.pattern = pattern["Regex"].get<std::string>();
    } else if (pattern.is_object() && pattern.contains("String") && pattern["String"].is_string()) {
      step.pattern = pattern["String"].get<std::string>();
      step.literal = true;
    } else {
      throw r.error(key + ".pattern", "is neither {\"Regex\": ...} nor {\"String\": ...}");
    }
    step.behavior = parse_behavior(r, j, key);
    step.invert = r.bool_member(j, "invert", key, false);
    spec->splits.push_back(std::move(step));
    return;
  }
  throw r.error(key + ".type", "unsupported pre-tokenizer '" + type + "'")
      .expected("Split and ByteLevel steps (byte-level BPE)");
}

void parse_model(const Reader& r, const json& j, BpeSpec* spec) {
  const std::string key = "model";
  if (!j.is_object()) throw r.error(key, "is not a JSON object");
  auto type = j.find("type");
  if (type != j.end() && !(type->is_string() && type->get<std::string>() == "BPE"))
    throw r.error("model.type", "unsupported model type " + type->dump()).expected("BPE");
  if (r.bool_member(j, "byte_fallback", key, false))
    throw r.error("model.byte_fallback", "byte_fallback (SentencePiece-style BPE) is not supported")
        .expected("false; load the model's tokenizer.model instead");
  auto dropout = j.find("dropout");
  if (dropout != j.end() && !dropout->is_null() && !(dropout->is_number() && dropout->get<double>() == 0.0))
    throw r.error("model.dropout", "BPE dropout makes encoding random").expected("null");
  for (const char* affix : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto it = j.find(affix);
    if (it != j.end() && !it->is_null() && !(it->is_string() && it->get<std::string>().empty()))
      throw r.error(std::string("model.") + affix, "subword affixes are not used by byte-level BPE").expected("null");
  }
  const json& vocab = r.member(j, "vocab", key);
  if (!vocab.is_object()) throw r.error("model.vocab", "is not an object of token: id");
  spec->vocab.reserve(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    spec->vocab.emplace_back(it.key(), r.token_id(it.value(), "model.vocab." + it.key()));
  }
  const json& merges = r.member(j, "merges", key);
  if (!merges.is_array()) throw r.error("model.merges", "is not an array");
  spec->merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& m = merges[i];
    if (m.is_string()) {  // "left right", the format before tokenizers 0.20
      const std::string s = m.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos)
        throw r.error(indexed("model.merges", i), "merge '" + s + "' is not two tokens separated by one space");
      spec->merges.emplace_back(s.substr(0, space), s.substr(space + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      spec->merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      throw r.error(indexed("model.merges", i), "is neither \"left right\" nor [\"left\", \"right\"]");
    }
  }
  auto unk = j.find("unk_token");
  if (unk != j.end() && unk->is_string()) spec->unk_token = unk->get<std::string>();
  spec->fuse_unk = r.bool_member(j, "fuse_unk", key, false);
  spec->ignore_merges = r.bool_member(j, "ignore_merges", key, false);
}

std::vector<AddedToken> parse_added_tokens(const Reader& r, const json& j) {
  std::vector<AddedToken> tokens;
  if (j.is_null()) return tokens;
  if (!j.is_array()) throw r.error("added_tokens", "is not an array");
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string key = indexed("added_tokens", i);
    const json& t = j[i];
    AddedToken token;
    const json& id = r.member(t, "id", key);
    token.id = r.token_id(id, key + ".id");
    token.content = r.string_member(t, "content", key);
    token.special = r.bool_member(t, "special", key, false);
    token.single_word = r.bool_member(t, "single_word", key, false);
    token.lstrip = r.bool_member(t, "lstrip", key, false);
    token.rstrip = r.bool_member(t, "rstrip", key, false);
    token.normalized = r.bool_member(t, "normalized", key, !token.special);
    tokens.push_back(std::move(token));
  }
  return tokens;
}

// Ids of one post-processor's single-sequence template, added around what is already there.
void parse_post_processor(const Reader& r, const json& j, const std::string& key, HfTokenizerSpec* spec) {
  if (j.is_null()) return;
  const std::string type = r.type_of(j, key);
  std::vector<int32_t> prefix, suffix;
  if (type == "ByteLevel") return;  // only trims offsets
  if (type == "Sequence") {
    const json& list = r.member(j, "processors", key);
    if (!list.is_array()) throw r.error(key + ".processors", "is not an array");
    for (size_t i = 0; i < list.size(); ++i) parse_post_processor(r, list[i], indexed(key + ".processors", i), spec);
    return;
  }
  if (type == "TemplateProcessing") {
    const json& single = r.member(j, "single", key);
    const json& special = r.member(j, "special_tokens", key);
    if (!single.is_array()) throw r.error(key + ".single", "is not an array");
    bool seen_sequence = false;
    for (size_t i = 0; i < single.size(); ++i) {
      const std::string piece_key = indexed(key + ".single", i);
      if (single[i].contains("Sequence")) {
        seen_sequence = true;
        continue;
      }
      const json& piece = r.member(single[i], "SpecialToken", piece_key);
      const std::string name = r.string_member(piece, "id", piece_key + ".SpecialToken");
      const json& entry = r.member(special, name, key + ".special_tokens");
      const json& ids = r.member(entry, "ids", key + ".special_tokens." + name);
      for (const json& id : ids) {
        (seen_sequence ? suffix : prefix).push_back(r.token_id(id, key + ".special_tokens." + name + ".ids"));
      }
    }
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    for (const char* name : {"cls", "sep"}) {
      const json& pair = r.member(j, name, key);
      if (!pair.is_array() || pair.size() != 2) throw r.error(key + "." + name, "is not [token, id]");
      (std::string(name) == "cls" ? prefix : suffix).push_back(r.token_id(pair[1], key + "." + name + "[1]"));
    }
  } else {
    throw r.error(key + ".type", "unsupported post-processor '" + type + "'")
        .expected("TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, Sequence or null");
  }
  spec->special_prefix.insert(spec->special_prefix.begin(), prefix.begin(), prefix.end());
  spec->special_suffix.insert(spec->special_suffix.end(), suffix.begin(), suffix.end());
}

bool mentions_byte_level(const json& j) {
  if (j.is_object()) {
    auto type = j.find("type");
    if (type != j.end() && type->is_string() && type->get<std::string>() == "ByteLevel") return true;
    for (const auto& item : j) if (mentions_byte_level(item)) return true;
  } else if (j.is_array()) {
    for (const auto& item : j) if (mentions_byte_level(item)) return true;
  }
  return false;
}

}  // namespace

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open file").file(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  try {
    return nlohmann::json::parse(buffer.str());
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("malformed JSON: ") + e.what()).file(path);
  }
}

HfTokenizerSpec parse_tokenizer_json(const nlohmann::json& j, const std::string& file) {
  const Reader r{file};
  if (!j.is_object()) throw Error("tokenizer.json is not a JSON object").file(file);
  HfTokenizerSpec spec;
  parse_model(r, r.member(j, "model", "tokenizer"), &spec.model);
  spec.normalizer = parse_normalizer(r, j.value("normalizer", json()), "normalizer");
  const json pre = j.value("pre_tokenizer", json());
  bool seen_byte_level = false;
  if (!pre.is_null()) parse_pre_tokenizer(r, pre, "pre_tokenizer", &spec.pre_tokenizer, &seen_byte_level);
  if (!seen_byte_level)
    throw r.error("pre_tokenizer", "has no ByteLevel step: not a byte-level BPE tokenizer")
        .expected("ByteLevel, or a Sequence ending in ByteLevel");
  const json decoder = j.value("decoder", json());
  if (!decoder.is_null() && r.type_of(decoder, "decoder") != "ByteLevel")
    throw r.error("decoder.type", "unsupported decoder '" + r.type_of(decoder, "decoder") + "'")
        .expected("ByteLevel or null");
  spec.added_tokens = parse_added_tokens(r, j.value("added_tokens", json()));
  parse_post_processor(r, j.value("post_processor", json()), "post_processor", &spec);
  return spec;
}

bool lacks_byte_level(const nlohmann::json& j) {
  return !j.is_object() || !mentions_byte_level(j.value("pre_tokenizer", nlohmann::json()));
}

}  // namespace qtrain::data
