// One corpus document between reading and tokenizing: where it came from (file, line, byte
// offset, for error messages) and its raw bytes, and the step that turns those bytes into
// the text to tokenize (UTF-8 check; for JSONL, parsing the line and taking the text key).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace qtrain::data {

// text: each file is one document. jsonl: each non-blank line is a JSON object, one document,
// whose text is the string under the text key.
enum class CorpusFormat { text, jsonl };

// "text" or "jsonl" -> the format; throws qtrain::Error for anything else.
CorpusFormat parse_corpus_format(const std::string& name);

struct RawDocument {
  int32_t file = 0;         // index into the corpus file list
  int64_t line = 0;         // 1-based line number (jsonl), 0 for a whole file (text)
  int64_t byte_offset = 0;  // offset of `bytes` in the (decompressed) file
  std::string bytes;        // the file (text; read by the worker) or the line without '\n' (jsonl)
};

// Offset of the first byte that is not part of well-formed UTF-8 in `s`, or npos if none.
size_t find_invalid_utf8(std::string_view s);

// The text to tokenize. Throws qtrain::Error naming `path` (and the line, for jsonl) for
// ill-formed UTF-8 (with the byte offset in the file), a line that is not a JSON object, a
// missing text key, or a text value that is not a string. Moves out of `document.bytes`
// for the text format.
std::string document_text(RawDocument& document, CorpusFormat format, const std::string& text_key,
                          const std::string& path);

}  // namespace qtrain::data
