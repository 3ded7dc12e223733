// Raw document -> text: the UTF-8 check (Unicode's well-formed sequences, table 3-7) and the
// JSONL line parser (nlohmann-json), with errors that point at the file, line and byte.
#include "data/corpus_document.h"

#include <cstring>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "data/utf8.h"

namespace qtrain::data {

CorpusFormat parse_corpus_format(const std::string& name) {
  if (name == "text") return CorpusFormat::text;
  if (name == "jsonl") return CorpusFormat::jsonl;
  throw Error("unknown corpus format '" + name + "'").key("--format").expected("text|jsonl");
}

size_t find_invalid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    // Most text is ASCII: skip eight bytes at a time while no byte has its high bit set.
    if (i + 8 <= s.size()) {
      uint64_t word;
      std::memcpy(&word, s.data() + i, 8);
      if ((word & 0x8080808080808080ull) == 0) {
        i += 8;
        continue;
      }
    }
    const size_t n = utf8::sequence_length(s, i);
    if (n == 0) return i;
    i += n;
  }
  return std::string_view::npos;
}

namespace {

void check_utf8(const RawDocument& document, const std::string& path, std::string_view bytes) {
  const size_t bad = find_invalid_utf8(bytes);
  if (bad == std::string_view::npos) return;
  const int64_t offset = document.byte_offset + static_cast<int64_t>(bad);
  char byte[8];
  std::snprintf(byte, sizeof(byte), "0x%02X", static_cast<unsigned char>(bytes[bad]));
  Error error("text is not valid UTF-8: byte " + std::string(byte) + " at byte offset " + std::to_string(offset) +
              (document.line > 0 ? " (column " + std::to_string(bad + 1) + " of the line)" : ""));
  error.file(path).expected("UTF-8 text (offsets count decompressed bytes for .gz files)");
  if (document.line > 0) error.line(static_cast<int>(document.line));
  throw error;
}

std::string jsonl_text(const RawDocument& document, const std::string& text_key, const std::string& path) {
  const auto fail = [&](const std::string& what) {
    return Error(what).file(path).line(static_cast<int>(document.line)).key(text_key);
  };
  nlohmann::json object;
  try {
    object = nlohmann::json::parse(document.bytes);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range (1e999)
    // nlohmann says "[json.exception.parse_error.101] parse error at line 1, column 7: ...";
    // the line is ours to name, so keep only what follows "line 1, ".
    std::string what = e.what();
    const size_t at = what.find("line 1, ");
    if (at != std::string::npos) what = what.substr(at + 8);
    throw fail("malformed JSON line: " + what).expected("one JSON object per line");
  }
  if (!object.is_object()) throw fail("line is JSON but not an object").expected("one JSON object per line");
  const auto it = object.find(text_key);
  if (it == object.end()) throw fail("object has no text key").expected("the key given by --text-key");
  if (!it->is_string()) throw fail("text value is a " + std::string(it->type_name())).expected("a string");
  return std::move(it->get_ref<std::string&>());
}

}  // namespace

std::string document_text(RawDocument& document, CorpusFormat format, const std::string& text_key,
                          const std::string& path) {
  check_utf8(document, path, document.bytes);
  if (format == CorpusFormat::text) return std::move(document.bytes);
  return jsonl_text(document, text_key, path);
}

}  // namespace qtrain::data
