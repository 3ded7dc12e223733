// qeval: evaluates a Hugging Face checkpoint folder on a token file. For now: perplexity
// under the window definition of docs/formats.md, on one rank or spread over MPI ranks.
// A token file made with another tokenizer than the folder's is refused (docs/qdata.md).
//   qeval --model DIR --data FILE.h5 [MORE.h5...] --seq-len N [--batch-size B] [--max-windows K] [--json]
//   qeval --model DIR --tasks A.jsonl[,B.jsonl] [--tokenizer T]   (multiple choice, docs/eval.md)
//   qeval --model DIR --generate "prompt" | --prompt-ids 1,2,3 [--max-new-tokens N] [--temperature T]
//         [--top-k K] [--top-p P] [--seed S]                     (generation with a KV cache)
//   qeval --report RUN_DIR [--output FILE]   (the run report, docs/report.md)
#include <boost/program_options.hpp>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "common/cli_main.h"
#include "common/device.h"
#include "common/dist.h"
#include "common/kernels.h"
#include "data/token_file.h"
#include "data/tokenizer_match.h"
#include "data/tokenizer.h"
#include "eval/generate.h"
#include "eval/multiple_choice.h"
#include "eval/perplexity.h"
#include "eval/report.h"
#include "model/hf_checkpoint.h"
#include "quant/load_compressed.h"

namespace po = boost::program_options;

namespace {

struct Options {
  std::string model, device = "auto", dtype = "auto";
  std::vector<std::string> data;  // token files: the first one's figures at the top of --json
  int64_t seq_len = 0, batch_size = 8, max_windows = 0;
  bool json = false;
  std::string tasks, tokenizer, target_delimiter = " ";  // multiple choice
  int64_t limit = 0;
  bool add_bos = false;
  std::string prompt, prompt_ids;  // generation
  int64_t max_new_tokens = 64;
  qtrain::eval::SamplingOptions sampling;
  bool ignore_eos = false;
};

std::optional<Options> parse(int argc, char** argv) {
  Options o;
  po::options_description desc("qeval: perplexity of a Hugging Face checkpoint on a token file\nOptions");
  desc.add_options()
      ("help,h", "show this help")
      ("model", po::value(&o.model)->required(), "Hugging Face checkpoint folder (config.json + safetensors)")
      ("data", po::value(&o.data)->multitoken()->composing(),
       "HDF5 token file(s) (dataset input_ids, docs/formats.md): perplexity of each, the model loaded once")
      ("seq-len", po::value(&o.seq_len), "tokens per window (>= 2), required with --data")
      ("batch-size", po::value(&o.batch_size)->default_value(8), "windows (--data) or requests (--tasks) per forward")
      ("max-windows", po::value(&o.max_windows)->default_value(0), "evaluate at most this many windows; 0 = all")
      ("device", po::value(&o.device)->default_value("auto"), "auto|cpu|cuda")
      ("dtype", po::value(&o.dtype)->default_value("auto"), "auto (bf16 on CUDA, fp32 on CPU)|fp32|bf16|fp16")
      ("tasks", po::value(&o.tasks), "comma-separated JSONL multiple-choice task files (docs/eval.md): acc, acc_norm")
      ("tokenizer", po::value(&o.tokenizer), "tokenizer.json / tokenizer.model / folder (default: the model folder's)")
      ("limit", po::value(&o.limit)->default_value(0), "with --tasks: the first N examples of each; 0 = all")
      ("add-bos", po::bool_switch(&o.add_bos), "with --tasks: put BOS before every context (the harness's add_bos_token)")
      ("target-delimiter", po::value(&o.target_delimiter)->default_value(" "), "with --tasks: put between context and choice")
      ("generate", po::value(&o.prompt), "generate a continuation of this prompt (with the tokenizer's special tokens)")
      ("prompt-ids", po::value(&o.prompt_ids), "generate from these comma-separated token ids (no tokenizer needed)")
      ("max-new-tokens", po::value(&o.max_new_tokens)->default_value(64), "tokens to generate at most")
      ("temperature", po::value(&o.sampling.temperature)->default_value(0.0), "0 = greedy; else sample from softmax(logits / T)")
      ("top-k", po::value(&o.sampling.top_k)->default_value(0), "sample among the k most likely tokens; 0 = all")
      ("top-p", po::value(&o.sampling.top_p)->default_value(1.0), "sample within the top-p nucleus; 1 = all")
      ("seed", po::value(&o.sampling.seed)->default_value(0), "seed of the sampling generator")
      ("ignore-eos", po::bool_switch(&o.ignore_eos), "do not stop at the tokenizer's EOS")
      ("json", po::bool_switch(&o.json), "print one JSON object instead of text")
      ("report", po::value<std::string>(), "RUN_DIR: write the HTML report of a qtrain run folder (docs/report.md) "
                                           "and exit; no other option is needed")
      ("output", po::value<std::string>(), "with --report: the file to write (default RUN_DIR/report.html)");
  po::variables_map vm;
  po::store(po::command_line_parser(argc, argv).options(desc).run(), vm);
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return std::nullopt;
  }
  po::notify(vm);
  if (o.data.empty() && o.tasks.empty() && o.prompt.empty() && o.prompt_ids.empty())
    throw qtrain::Error("nothing to evaluate").expected("--data (perplexity), --tasks (multiple choice), --generate or --prompt-ids");
  if (!o.data.empty() && !vm.count("seq-len")) throw qtrain::Error("is required with --data").key("--seq-len");
  if (!o.data.empty() && o.seq_len < 2) throw qtrain::Error("must be at least 2, got " + std::to_string(o.seq_len)).key("--seq-len");
  if (!o.prompt.empty() && !o.prompt_ids.empty()) throw qtrain::Error("give --generate or --prompt-ids, not both").key("--prompt-ids");
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

// qeval --report RUN_DIR [--output FILE]: the run report alone, before the options that
// evaluating a model requires are parsed.
std::optional<std::string> report_request(int argc, char** argv) {
  std::string dir, output;
  po::options_description desc;
  desc.add_options()("report", po::value(&dir))("output", po::value(&output));
  po::variables_map vm;
  po::store(po::command_line_parser(argc, argv).options(desc).allow_unregistered().run(), vm);
  po::notify(vm);
  if (dir.empty()) return std::nullopt;
  return qtrain::eval::write_report(dir, output);
}

std::unique_ptr<qtrain::data::Tokenizer> load_tokenizer(const Options& o) {
  if (!o.tokenizer.empty()) return qtrain::data::load_tokenizer(o.tokenizer);
  const std::filesystem::path folder(o.model);
  if (!std::filesystem::exists(folder / "tokenizer.json") && !std::filesystem::exists(folder / "tokenizer.model"))
    throw qtrain::Error("the model folder holds no tokenizer").file(o.model).key("--tokenizer").expected("--tokenizer FILE");
  return qtrain::data::load_tokenizer(o.model);
}

nlohmann::json run_tasks(qtrain::model::CausalLMImpl& model, const Options& o) {
  const auto tokenizer = load_tokenizer(o);
  qtrain::eval::McOptions mc;
  mc.batch_size = o.batch_size;
  mc.limit = o.limit;
  mc.add_bos = o.add_bos;
  mc.target_delimiter = o.target_delimiter;
  nlohmann::json out = nlohmann::json::array();
  std::stringstream files(o.tasks);
  for (std::string file; std::getline(files, file, ',');) {
    if (file.empty()) continue;
    const auto r = qtrain::eval::evaluate_multiple_choice(model, *tokenizer, qtrain::eval::read_mc_task(file), mc);
    out.push_back({{"task", r.task}, {"file", file}, {"count", r.count}, {"acc", r.acc}, {"acc_stderr", r.acc_stderr},
                   {"acc_norm", r.acc_norm}, {"acc_norm_stderr", r.acc_norm_stderr}, {"seconds", r.seconds}});
    if (!o.json && qtrain::dist::is_main())
      std::printf("%s: acc %.4f +- %.4f  acc_norm %.4f +- %.4f  (%lld examples, %.1f s)\n", r.task.c_str(), r.acc,
                  r.acc_stderr, r.acc_norm, r.acc_norm_stderr, (long long)r.count, r.seconds);
  }
  return out;
}

std::vector<int64_t> parse_ids(const std::string& text) {
  std::vector<int64_t> ids;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    try {
      size_t used = 0;
      ids.push_back(std::stoll(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      throw qtrain::Error("not a token id: '" + item + "'").key("--prompt-ids").expected("comma-separated integers");
    }
  }
  return ids;
}

nlohmann::json run_generation(qtrain::model::CausalLMImpl& model, const Options& o) {
  std::unique_ptr<qtrain::data::Tokenizer> tokenizer;
  if (!o.prompt.empty()) tokenizer = load_tokenizer(o);
  else if (!o.tokenizer.empty() || std::filesystem::exists(std::filesystem::path(o.model) / "tokenizer.json") ||
           std::filesystem::exists(std::filesystem::path(o.model) / "tokenizer.model"))
    tokenizer = load_tokenizer(o);  // only to print the ids as text
  std::vector<int64_t> prompt;
  if (!o.prompt.empty()) {
    const auto ids = tokenizer->encode_with_special_tokens(o.prompt);
    prompt.assign(ids.begin(), ids.end());
  } else {
    prompt = parse_ids(o.prompt_ids);
  }
  qtrain::eval::GenerateOptions g;
  g.max_new_tokens = o.max_new_tokens;
  g.sampling = o.sampling;
  if (tokenizer && tokenizer->eos_id() && !o.ignore_eos) g.eos_id = *tokenizer->eos_id();
  const auto r = qtrain::eval::generate(model, prompt, g);
  std::string text;
  if (tokenizer) text = tokenizer->decode(std::vector<int32_t>(r.tokens.begin(), r.tokens.end()));
  const double tokens_per_second = r.decode_steps ? static_cast<double>(r.decode_steps) / r.decode_seconds : 0.0;
  if (!o.json && qtrain::dist::is_main()) {
    if (tokenizer) {
      std::printf("%s%s\n", o.prompt.c_str(), text.c_str());
    } else {
      for (size_t i = 0; i < r.tokens.size(); ++i) std::printf("%s%lld", i ? "," : "", (long long)r.tokens[i]);
      std::printf("\n");
    }
    std::fprintf(stderr, "qeval: %zu prompt tokens, %zu generated%s, prefill %.1f ms, decode %.1f tok/s\n", prompt.size(),
                 r.tokens.size(), r.stopped_at_eos ? " (EOS)" : "", 1e3 * r.prefill_seconds, tokens_per_second);
  }
  nlohmann::json j = {{"prompt_tokens", prompt.size()}, {"tokens", r.tokens}, {"stopped_at_eos", r.stopped_at_eos},
                      {"prefill_seconds", r.prefill_seconds}, {"decode_tokens_per_second", tokens_per_second},
                      {"temperature", o.sampling.temperature}, {"top_k", o.sampling.top_k},
                      {"top_p", o.sampling.top_p}, {"seed", o.sampling.seed}};
  if (tokenizer) j["text"] = text;
  return j;
}

int run(int argc, char** argv) {
  if (const auto report = report_request(argc, argv)) {
    std::printf("qeval: report %s\n", report->c_str());
    return 0;
  }
  const auto options = parse(argc, argv);
  if (!options) return 0;
  const auto device = qtrain::resolve_device(options->device);
  const auto dtype = qtrain::resolve_dtype(options->dtype, device);
  const auto kernels = qtrain::check_kernel_switches(device.is_cuda());
  std::vector<qtrain::data::TokenFile> token_files;
  for (const auto& path : options->data) {
    token_files.push_back(qtrain::data::TokenFile::open(path));
    check_tokenizer(options->model, token_files.back());
  }
  auto model = qtrain::quant::load_for_eval(options->model, {device, dtype});
  if (!options->json && qtrain::dist::is_main())
    std::fprintf(stderr, "qeval: %s\n", qtrain::describe_kernel_switches(kernels).c_str());

  nlohmann::json j = {{"model", options->model}};
  for (size_t i = 0; i < token_files.size(); ++i) {
    qtrain::eval::PerplexityOptions eval_options;
    eval_options.seq_len = options->seq_len;
    eval_options.batch_size = options->batch_size;
    eval_options.max_windows = options->max_windows;
    eval_options.show_progress = !options->json;
    qtrain::eval::PerplexityResult r;
    try {
      r = qtrain::eval::evaluate_perplexity(*model, token_files[i], eval_options);
    } catch (qtrain::Error& e) {
      if (e.file_name().empty()) e.file(options->model);  // a non-finite loss: the checkpoint is at fault
      throw;
    }
    const nlohmann::json figures = {{"data", options->data[i]}, {"seq_len", options->seq_len}, {"perplexity", r.perplexity},
                                    {"mean_nll", r.mean_nll}, {"tokens", r.tokens}, {"windows", r.windows},
                                    {"seconds", r.seconds}, {"tokens_per_second", r.tokens_per_second}};
    if (i == 0) j.update(figures);
    if (token_files.size() > 1) j["datasets"].push_back(figures);
    if (!options->json && qtrain::dist::is_main())
      std::printf("%s%sperplexity %.6f  mean_nll %.6f  (%lld windows of %lld tokens, %lld predicted tokens, %s, %.1f tok/s)\n",
                  token_files.size() > 1 ? options->data[i].c_str() : "", token_files.size() > 1 ? ": " : "",
                  r.perplexity, r.mean_nll, (long long)r.windows, (long long)options->seq_len, (long long)r.tokens,
                  qtrain::describe(device, dtype).c_str(), r.tokens_per_second);
  }
  if (!options->tasks.empty()) j["tasks"] = run_tasks(*model, *options);
  if (!options->prompt.empty() || !options->prompt_ids.empty()) j["generation"] = run_generation(*model, *options);
  j.update({{"device", qtrain::describe(device, dtype)}, {"ranks", qtrain::dist::world_size()}, {"kernels", kernels}});
  if (options->json && qtrain::dist::is_main()) std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return qtrain::run_cli("qeval", &argc, &argv, [&] { return run(argc, argv); });
}
