// build_token_files(): checks the options, streams the tokenized documents into one or two
// TokenFileWriters in corpus order, and commits them only when the whole corpus was good.
#include "data/corpus_builder.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>

#include "common/error.h"
#include "common/paths.h"
#include "common/progress.h"
#include "data/corpus_input.h"
#include "data/corpus_pipeline.h"
#include "data/corpus_split.h"
#include "data/token_writer.h"

namespace qtrain::data {
namespace fs = std::filesystem;

namespace {

void check_options(const CorpusBuildOptions& o) {
  if (o.inputs.empty()) throw Error("no corpus given").key("--input").expected("files or folders");
  if (o.output.empty()) throw Error("no output file given").key("--output");
  if (o.threads < 1 || o.threads > kMaxCorpusThreads)
    throw Error("got " + std::to_string(o.threads))
        .key("--threads")
        .expected("1 to " + std::to_string(kMaxCorpusThreads) + " tokenizer threads");
  if (!(o.val_fraction >= 0 && o.val_fraction < 1))
    throw Error("must lie in [0, 1), got " + std::to_string(o.val_fraction)).key("--val-fraction");
  if (o.val_fraction > 0 && (o.val_output.empty() || resolved(o.val_output) == resolved(o.output)))
    throw Error("the validation split needs its own file")
        .file(o.val_output)
        .key("--val-output")
        .expected("a file other than --output");
}

// The writer renames its file over `output` at the end, so an output that is a corpus file
// would replace it, and one inside an input folder would be read back as corpus by the next
// run over that folder. Both are refused before anything is written.
void check_output_apart_from_inputs(const std::string& output, const std::string& key,
                                    const std::vector<std::string>& inputs, const std::vector<CorpusFile>& files) {
  const fs::path out = resolved(output);
  for (const auto& input : inputs) {
    std::error_code ec;
    if (fs::is_directory(input, ec) && is_within(out, resolved(input)))
      throw Error("lies inside the input folder " + input).file(output).key(key).expected(
          "an output outside every --input folder");
  }
  std::error_code ec;
  if (!fs::exists(out, ec)) return;  // no corpus file has a name that does not exist
  for (const auto& f : files)
    if (resolved(f.path) == out)
      throw Error("is the input file " + f.path + " (the output would replace it)").file(output).key(key).expected(
          "an output that is none of the --input files");
}

void check_outputs_apart_from_inputs(const CorpusBuildOptions& o, const std::vector<CorpusFile>& files) {
  check_output_apart_from_inputs(o.output, "--output", o.inputs, files);
  if (!o.val_output.empty()) check_output_apart_from_inputs(o.val_output, "--val-output", o.inputs, files);
}

std::optional<int32_t> eos_to_append(const Tokenizer& tokenizer, bool append_eos) {
  if (!append_eos) return std::nullopt;
  if (!tokenizer.eos_id())
    throw Error("the tokenizer has no EOS token to append")
        .file(tokenizer.source())
        .key("--append-eos")
        .expected("an eos_token in tokenizer_config.json or a special token such as <|endoftext|> or </s>");
  return tokenizer.eos_id();
}

std::unique_ptr<TokenFileWriter> open_writer(const std::string& path, const Tokenizer& tokenizer) {
  const auto parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  TokenFileInfo info;
  info.vocab_size = tokenizer.vocab_size();
  info.tokenizer_fingerprint = tokenizer.fingerprint();
  info.type = tokenizer.vocab_size() <= 65536 ? TokenType::uint16 : TokenType::int32;
  return std::make_unique<TokenFileWriter>(path, info);
}

void check_not_empty(const CorpusBuildResult& r, const CorpusBuildOptions& o) {
  if (r.documents == 0)
    throw Error("the corpus holds no documents (" + std::to_string(r.files) + " files, " +
                std::to_string(r.empty_documents) + " empty documents)")
        .key("--input")
        .expected("at least one non-empty document");
  if (r.tokens == 0) throw Error("the corpus gave no tokens").key("--input").expected("at least one token");
  if (o.val_fraction > 0 && (r.val.documents == 0 || r.train.documents == 0))
    throw Error("--val-fraction " + std::to_string(o.val_fraction) + " leaves the " +
                (r.val.documents == 0 ? "validation" : "training") + " split of " + std::to_string(r.documents) +
                " documents empty")
        .key("--val-fraction")
        .expected("a fraction that puts documents in both splits");
}

}  // namespace

CorpusBuildResult build_token_files(const Tokenizer& tokenizer, const CorpusBuildOptions& options) {
  check_options(options);
  const auto start = std::chrono::steady_clock::now();
  const std::optional<int32_t> eos = eos_to_append(tokenizer, options.append_eos);
  const std::vector<CorpusFile> files = list_corpus_files(options.inputs);
  check_outputs_apart_from_inputs(options, files);

  CorpusBuildResult result;
  result.files = static_cast<int64_t>(files.size());
  for (const auto& f : files) result.disk_bytes += f.disk_bytes;
  result.train.path = options.output;
  auto train = open_writer(options.output, tokenizer);
  std::unique_ptr<TokenFileWriter> val;
  if (options.val_fraction > 0) {
    result.val.path = options.val_output;
    val = open_writer(options.val_output, tokenizer);
  }

  ProgressBar progress("qdata", result.disk_bytes / 1000, "kB input");
  const bool show = options.show_progress && progress.enabled();
  CorpusPipelineOptions pipeline{options.format, options.text_key, options.threads};
  tokenize_corpus(files, tokenizer, pipeline, [&](TokenizedDocument& document, int64_t disk_done) {
    if (document.text.empty()) {
      ++result.empty_documents;
      return;
    }
    if (eos) document.ids.push_back(*eos);
    const bool to_val = val && in_validation_split(document.text, options.val_fraction);
    (to_val ? *val : *train).append_document(document.ids);
    SplitResult& split = to_val ? result.val : result.train;
    const auto tokens = static_cast<int64_t>(document.ids.size());
    const auto bytes = static_cast<int64_t>(document.text.size());
    split.documents += 1, split.tokens += tokens, split.text_bytes += bytes;
    result.documents += 1, result.tokens += tokens, result.text_bytes += bytes;
    if (show)
      progress.update(disk_done / 1000, static_cast<double>(result.text_bytes) / 1e6, "MB text",
                      format_si(static_cast<double>(result.tokens)) + " tokens");
  });
  check_not_empty(result, options);
  if (show) {
    progress.update(result.disk_bytes / 1000, static_cast<double>(result.text_bytes) / 1e6, "MB text",
                    format_si(static_cast<double>(result.tokens)) + " tokens");
    progress.finish();
  }
  train->commit();
  if (val) val->commit();
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace qtrain::data
