// Writes token files (docs/formats.md) in one streaming pass: documents are appended to
// chunked, extendable datasets, so memory stays constant whatever the corpus size. The
// file appears under its final name only on commit() (written beside it, then renamed).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace qtrain::data {

inline constexpr const char* kDocumentOffsetsDataset = "document_offsets";

enum class TokenType { uint16, int32, int64 };

struct TokenFileInfo {
  int64_t vocab_size = 0;             // stored as attribute; ids must lie in [0, vocab_size)
  std::string tokenizer_fingerprint;  // stored as attribute when non-empty
  TokenType type = TokenType::int32;  // uint16 needs vocab_size <= 65536
};

class TokenFileWriter {
 public:
  TokenFileWriter(std::string path, TokenFileInfo info);
  ~TokenFileWriter();  // an uncommitted file is removed
  TokenFileWriter(const TokenFileWriter&) = delete;
  TokenFileWriter& operator=(const TokenFileWriter&) = delete;

  // Appends one document's ids and records where it starts.
  void append_document(const int32_t* ids, int64_t count);
  void append_document(const std::vector<int32_t>& ids) { append_document(ids.data(), static_cast<int64_t>(ids.size())); }
  int64_t tokens() const { return tokens_; }
  int64_t documents() const { return documents_; }
  // Flushes, closes and renames the file into place (fsynced).
  void commit();

 private:
  void flush_tokens();
  void flush_offsets();
  struct Handles;
  std::unique_ptr<Handles> h_;
  std::string path_, tmp_path_;
  TokenFileInfo info_;
  std::vector<int64_t> pending_tokens_, pending_offsets_;
  int64_t tokens_ = 0, documents_ = 0;
  uint64_t tokens_written_ = 0, offsets_written_ = 0;
  bool committed_ = false;
};

}  // namespace qtrain::data
