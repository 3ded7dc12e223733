// load_tokenizer(): picks the tokenizer kind from the path, and encode_with_special_tokens().
#include "data/tokenizer.h"

#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "data/hf_tokenizer.h"
#include "data/sentencepiece_tokenizer.h"
#include "data/tokenizer_json.h"

namespace qtrain::data {
namespace fs = std::filesystem;

std::vector<int32_t> Tokenizer::encode_with_special_tokens(std::string_view text) const {
  std::vector<int32_t> ids = special_prefix_;
  const std::vector<int32_t> body = encode(text);
  ids.insert(ids.end(), body.begin(), body.end());
  ids.insert(ids.end(), special_suffix_.begin(), special_suffix_.end());
  return ids;
}

namespace {

std::unique_ptr<Tokenizer> load_json(const nlohmann::json& json, const fs::path& path) {
  auto tokenizer = std::make_unique<HfTokenizer>(parse_tokenizer_json(json, path.string()), path.string());
  const fs::path config = path.parent_path() / "tokenizer_config.json";
  if (fs::is_regular_file(config)) tokenizer->apply_tokenizer_config(read_json_file(config.string()), config.string());
  return tokenizer;
}

// A tokenizer file is JSON if its first non-blank byte is '{' (a .model file is protobuf).
bool looks_like_json(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  char c = 0;
  while (in.get(c))
    if (!std::isspace(static_cast<unsigned char>(c))) return c == '{';
  return false;
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path_text) {
  const fs::path path(path_text);
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    const fs::path json_path = path / "tokenizer.json", model_path = path / "tokenizer.model";
    const bool has_json = fs::is_regular_file(json_path), has_model = fs::is_regular_file(model_path);
    if (has_json) {
      const nlohmann::json json = read_json_file(json_path.string());
      if (!(has_model && lacks_byte_level(json))) return load_json(json, json_path);
    }
    if (has_model) return SentencePieceTokenizer::load(model_path.string());
    throw Error("folder holds neither tokenizer.json nor tokenizer.model").file(path_text);
  }
  if (!fs::exists(path, ec)) throw Error("no such tokenizer file or folder").file(path_text);
  if (path.extension() == ".json" || (path.extension() != ".model" && looks_like_json(path)))
    return load_json(read_json_file(path_text), path);
  return SentencePieceTokenizer::load(path_text);
}

}  // namespace qtrain::data
