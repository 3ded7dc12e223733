// qdata: tokenizes a text or JSONL corpus into token files (docs/formats.md) on every core,
// optionally split into training and validation files. What it reads, writes and measures:
// docs/qdata.md.
//   qdata --tokenizer PATH --input FILE_OR_DIR... --output OUT.h5 [--format text|jsonl]
//         [--text-key K] [--val-fraction F [--val-output VAL.h5]] [--append-eos] [--threads N] [--json]
#include <sys/resource.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/cli_main.h"
#include "common/dist.h"
#include "common/progress.h"
#include "data/corpus_builder.h"
#include "data/tokenizer.h"

namespace po = boost::program_options;

namespace {

struct Options {
  std::string tokenizer, format = "text";
  qtrain::data::CorpusBuildOptions build;
  bool json = false;
};

// "out.h5" -> "out.train.h5" / "out.val.h5".
std::string split_path(const std::string& output, const std::string& split) {
  const std::filesystem::path path(output);
  return (path.parent_path() / (path.stem().string() + "." + split + path.extension().string())).string();
}

std::optional<Options> parse(int argc, char** argv) {
  Options o;
  auto& b = o.build;
  const int max_threads = qtrain::data::kMaxCorpusThreads;
  const int cores = std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, max_threads);
  const std::string threads_help = "tokenizer threads, 1 to " + std::to_string(max_threads) + " (default: the cores)";
  po::options_description desc("qdata: tokenize a corpus into HDF5 token files (docs/qdata.md)\nOptions");
  desc.add_options()
      ("help,h", "show this help")
      ("tokenizer", po::value(&o.tokenizer)->required(), "tokenizer.json, tokenizer.model, or a folder with either")
      ("input", po::value(&b.inputs)->multitoken()->required(), "corpus files or folders (recursed, sorted); .gz read transparently")
      ("format", po::value(&o.format)->default_value("text"), "text (one document per file) | jsonl (one JSON object per line)")
      ("text-key", po::value(&b.text_key)->default_value("text"), "jsonl: the key holding the document text")
      ("output", po::value(&b.output)->required(), "token file; with --val-fraction, OUT.h5 becomes OUT.train.h5 and OUT.val.h5")
      ("val-fraction", po::value(&b.val_fraction)->default_value(0.0), "fraction of documents for validation, by a hash of their text")
      ("val-output", po::value(&b.val_output), "validation file; then --output names the training file as given")
      ("append-eos", po::bool_switch(&b.append_eos), "put the tokenizer's EOS id after each document")
      ("threads", po::value(&b.threads)->default_value(cores), threads_help.c_str())
      ("json", po::bool_switch(&o.json), "print one JSON object instead of text (and no progress bar)");
  po::variables_map vm;
  po::store(po::command_line_parser(argc, argv).options(desc).run(), vm);
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return std::nullopt;
  }
  po::notify(vm);
  b.format = qtrain::data::parse_corpus_format(o.format);
  if (b.val_fraction > 0 && b.val_output.empty()) {
    b.val_output = split_path(b.output, "val");
    b.output = split_path(b.output, "train");
  }
  b.show_progress = !o.json;
  return o;
}

double cpu_seconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  const auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + 1e-6 * static_cast<double>(t.tv_usec); };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

nlohmann::json split_json(const qtrain::data::SplitResult& s) {
  return {{"path", s.path}, {"documents", s.documents}, {"tokens", s.tokens}, {"text_bytes", s.text_bytes}};
}

void print(const Options& o, const qtrain::data::Tokenizer& tokenizer, const qtrain::data::CorpusBuildResult& r,
           double cpu) {
  const double mb_per_second = r.seconds > 0 ? static_cast<double>(r.text_bytes) / 1e6 / r.seconds : 0.0;
  if (o.json) {
    nlohmann::json j = {{"files", r.files}, {"documents", r.documents}, {"empty_documents", r.empty_documents},
                        {"tokens", r.tokens}, {"text_bytes", r.text_bytes}, {"disk_bytes", r.disk_bytes},
                        {"seconds", r.seconds}, {"cpu_seconds", cpu}, {"mb_per_second", mb_per_second},
                        {"threads", o.build.threads}, {"vocab_size", tokenizer.vocab_size()},
                        {"tokenizer_fingerprint", tokenizer.fingerprint()}, {"append_eos", o.build.append_eos},
                        {"train", split_json(r.train)}};
    if (!r.val.path.empty()) j["val"] = split_json(r.val);
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::string outputs = r.train.path;
  if (!r.val.path.empty())
    outputs = "train " + r.train.path + " (" + std::to_string(r.train.documents) + " documents, " +
              qtrain::format_si(static_cast<double>(r.train.tokens)) + " tokens), val " + r.val.path + " (" +
              std::to_string(r.val.documents) + " documents, " + qtrain::format_si(static_cast<double>(r.val.tokens)) +
              " tokens)";
  std::printf("qdata: %lld documents, %lld tokens, %.2f MB of text in %.2f s (%.1f MB/s, %d threads, %.1f CPU s) -> %s\n",
              (long long)r.documents, (long long)r.tokens, static_cast<double>(r.text_bytes) / 1e6, r.seconds,
              mb_per_second, o.build.threads, cpu, outputs.c_str());
}

int run(int argc, char** argv) {
  const auto options = parse(argc, argv);
  if (!options) return 0;
  if (qtrain::dist::world_size() > 1)
    throw qtrain::Error("qdata runs as one process (it uses threads: --threads), not under mpirun");
  const auto tokenizer = qtrain::data::load_tokenizer(options->tokenizer);
  const double cpu_before = cpu_seconds();
  const auto result = qtrain::data::build_token_files(*tokenizer, options->build);
  print(*options, *tokenizer, result, cpu_seconds() - cpu_before);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return qtrain::run_cli("qdata", &argc, &argv, [&] { return run(argc, argv); });
}
