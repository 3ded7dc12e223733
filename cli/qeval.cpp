// qeval: evaluates a Hugging Face checkpoint folder on a token file. For now: perplexity
// under the window definition of docs/formats.md, on one rank or spread over MPI ranks.
// A token file made with another tokenizer than the folder's is refused (docs/qdata.md).
//   qeval --model DIR --data FILE.h5 --seq-len N [--batch-size B] [--max-windows K] [--json]
#include <boost/program_options.hpp>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "common/cli_main.h"
#include "common/device.h"
#include "common/dist.h"
#include "data/token_file.h"
#include "data/tokenizer_match.h"
#include "eval/perplexity.h"
#include "model/hf_checkpoint.h"
#include "quant/load_compressed.h"

namespace po = boost::program_options;

namespace {

struct Options {
  std::string model, data, device = "auto", dtype = "auto";
  int64_t seq_len = 0, batch_size = 8, max_windows = 0;
  bool json = false;
};

std::optional<Options> parse(int argc, char** argv) {
  Options o;
  po::options_description desc("qeval: perplexity of a Hugging Face checkpoint on a token file\nOptions");
  desc.add_options()
      ("help,h", "show this help")
      ("model", po::value(&o.model)->required(), "Hugging Face checkpoint folder (config.json + safetensors)")
      ("data", po::value(&o.data)->required(), "HDF5 token file (dataset input_ids, docs/formats.md)")
      ("seq-len", po::value(&o.seq_len)->required(), "tokens per window (>= 2)")
      ("batch-size", po::value(&o.batch_size)->default_value(8), "windows per forward pass")
      ("max-windows", po::value(&o.max_windows)->default_value(0), "evaluate at most this many windows; 0 = all")
      ("device", po::value(&o.device)->default_value("auto"), "auto|cpu|cuda")
      ("dtype", po::value(&o.dtype)->default_value("auto"), "auto (bf16 on CUDA, fp32 on CPU)|fp32|bf16|fp16")
      ("json", po::bool_switch(&o.json), "print one JSON object instead of text");
  po::variables_map vm;
  po::store(po::command_line_parser(argc, argv).options(desc).run(), vm);
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return std::nullopt;
  }
  po::notify(vm);
  if (o.seq_len < 2) throw qtrain::Error("must be at least 2, got " + std::to_string(o.seq_len)).key("--seq-len");
  if (o.batch_size < 1) throw qtrain::Error("must be at least 1").key("--batch-size");
  if (o.max_windows < 0) throw qtrain::Error("must be >= 0").key("--max-windows");
  return o;
}

// Ids only mean something with the tokenizer that made them: when the model folder holds its
// tokenizer and the token file records a fingerprint, the two must agree (else exit status 2).
void check_tokenizer(const std::string& model_dir, const qtrain::data::TokenFile& tokens) {
  if (!tokens.tokenizer_fingerprint()) return;  // written by another tool: nothing to compare
  const std::filesystem::path folder(model_dir);
  if (!std::filesystem::exists(folder / "tokenizer.json") && !std::filesystem::exists(folder / "tokenizer.model")) return;
  qtrain::data::check_tokenizer_fingerprint(tokens, *qtrain::data::load_tokenizer(model_dir));
}

int run(int argc, char** argv) {
  const auto options = parse(argc, argv);
  if (!options) return 0;
  const auto device = qtrain::resolve_device(options->device);
  const auto dtype = qtrain::resolve_dtype(options->dtype, device);
  auto tokens = qtrain::data::TokenFile::open(options->data);
  check_tokenizer(options->model, tokens);
  auto model = qtrain::quant::load_for_eval(options->model, {device, dtype});

  qtrain::eval::PerplexityOptions eval_options;
  eval_options.seq_len = options->seq_len;
  eval_options.batch_size = options->batch_size;
  eval_options.max_windows = options->max_windows;
  eval_options.show_progress = !options->json;
  const auto r = qtrain::eval::evaluate_perplexity(*model, tokens, eval_options);
  if (!qtrain::dist::is_main()) return 0;
  if (options->json) {
    nlohmann::json j = {{"model", options->model}, {"data", options->data},
                        {"seq_len", options->seq_len}, {"perplexity", r.perplexity},
                        {"mean_nll", r.mean_nll}, {"tokens", r.tokens},
                        {"windows", r.windows}, {"device", qtrain::describe(device, dtype)},
                        {"ranks", qtrain::dist::world_size()}, {"seconds", r.seconds},
                        {"tokens_per_second", r.tokens_per_second}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("perplexity %.6f  mean_nll %.6f  (%lld windows of %lld tokens, %lld predicted tokens, %s, %.1f tok/s)\n",
                r.perplexity, r.mean_nll, (long long)r.windows, (long long)options->seq_len, (long long)r.tokens,
                qtrain::describe(device, dtype).c_str(), r.tokens_per_second);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return qtrain::run_cli("qeval", &argc, &argv, [&] { return run(argc, argv); });
}
