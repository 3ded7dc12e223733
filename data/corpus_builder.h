// The qdata job as a library call: corpus files -> tokenizer pool -> one token file, or a
// train and a validation token file (docs/qdata.md). The CLI parses options into
// CorpusBuildOptions and prints the CorpusBuildResult.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/corpus_document.h"
#include "data/tokenizer.h"

namespace qtrain::data {

// The most tokenizer threads qdata takes (--threads): threads beyond the hardware threads
// only add contention, few hosts have more than 1024, and each thread keeps about 4 batches of
// 256 KB in flight (data/corpus_pipeline.h), so 1024 threads already hold about 1 GB of text.
constexpr int kMaxCorpusThreads = 1024;

struct CorpusBuildOptions {
  std::vector<std::string> inputs;  // files and folders (recursed, sorted)
  CorpusFormat format = CorpusFormat::text;
  std::string text_key = "text";
  std::string output;      // every document, or the training split when val_fraction > 0
  std::string val_output;  // the validation split; used when val_fraction > 0
  double val_fraction = 0;
  bool append_eos = false;  // the tokenizer's EOS id after each document
  int threads = 1;  // 1 to kMaxCorpusThreads
  bool show_progress = true;  // a progress bar on stderr
};

struct SplitResult {
  std::string path;
  int64_t documents = 0, tokens = 0, text_bytes = 0;
};

struct CorpusBuildResult {
  SplitResult train;  // everything, without a split
  SplitResult val;    // empty without a split
  int64_t files = 0, documents = 0, tokens = 0, text_bytes = 0;
  int64_t empty_documents = 0;  // documents with no text: skipped, not written
  int64_t disk_bytes = 0;       // input size on disk (compressed for .gz)
  double seconds = 0;
};

// Runs the whole job; the output files appear only if it succeeds. Throws qtrain::Error for
// bad input: a missing input, an output that is an input file or lies in an input folder
// (refused before anything is written), an empty corpus (no documents or no tokens),
// ill-formed UTF-8, malformed JSONL, a tokenizer without EOS under append_eos, a split left
// empty, more threads than the system lets the process start.
CorpusBuildResult build_token_files(const Tokenizer& tokenizer, const CorpusBuildOptions& options);

}  // namespace qtrain::data
