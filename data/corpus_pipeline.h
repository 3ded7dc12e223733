// Tokenizes a corpus on a pool of threads and hands the documents back in corpus order, in
// constant memory: one reader thread cuts the corpus into batches of consecutive documents
// (whole files for text, which the workers then read; lines for JSONL, which it reads
// itself), worker threads check and tokenize whole batches, and the calling thread receives
// them in order. At most a fixed window of batches is in flight, so neither the queue nor the reorder
// buffer grows with the corpus; the output cannot depend on the number of threads.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/corpus_document.h"
#include "data/corpus_input.h"
#include "data/tokenizer.h"

namespace qtrain::data {

struct CorpusPipelineOptions {
  CorpusFormat format = CorpusFormat::text;
  std::string text_key = "text";  // jsonl only
  int threads = 1;                // tokenizer threads (>= 1); the reader thread comes on top
  size_t batch_bytes = 1 << 18;   // a batch closes at this many bytes (on disk for text files)
};

struct TokenizedDocument {
  int32_t file = 0;  // index into the file list
  int64_t line = 0;  // jsonl: 1-based line; text: 0
  std::string text;
  std::vector<int32_t> ids;  // tokenizer.encode(text): nothing added
};

// Where reading has got when a document is delivered, for progress: disk bytes of `files`
// consumed so far (compressed bytes for .gz).
using DocumentSink = std::function<void(TokenizedDocument& document, int64_t disk_bytes_done)>;

// Calls `sink` on the calling thread for every document of `files`, in corpus order (file
// order, then line order). Blank JSONL lines are no documents. The first bad document in
// corpus order (unreadable file, corrupt gzip, ill-formed UTF-8, malformed JSONL) throws its
// qtrain::Error here, as does anything `sink` throws, and a thread the system refuses to start
// (an Error keyed --threads); the threads are stopped and joined first.
void tokenize_corpus(const std::vector<CorpusFile>& files, const Tokenizer& tokenizer,
                     const CorpusPipelineOptions& options, const DocumentSink& sink);

}  // namespace qtrain::data
