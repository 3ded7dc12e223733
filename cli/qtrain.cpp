// qtrain: the training job. Reads the config once (config/load.h), then trains
// (trainer/run.h), or prints the resolved config with --dry-run. Subcommands:
//   qtrain quantize --model HF_DIR --scheme S --calib FILE.h5 --output DIR [--method M] ...
//   qtrain export --checkpoint CK --output DIR
#include <cstdio>
#include <string>

#include "common/cli_main.h"
#include "config/command_line.h"
#include "config/embedded.h"
#include "config/load.h"
#include "config/print.h"
#include "common/compat.h"
#include "common/dist.h"
#include "trainer/estimate.h"
#include "trainer/jobs.h"
#include "trainer/run.h"

#include <boost/program_options.hpp>
#include <iostream>

namespace {

namespace po = boost::program_options;

// Parses a subcommand's options (argv[1] is the subcommand); nullopt after --help.
std::optional<po::variables_map> parse_subcommand(int argc, char** argv, po::options_description& desc) {
  desc.add_options()("help,h", "show this help");
  po::variables_map vm;
  po::store(po::command_line_parser(argc - 1, argv + 1).options(desc).run(), vm);
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return std::nullopt;
  }
  po::notify(vm);
  return vm;
}

int quantize_command(int argc, char** argv) {
  qtrain::trainer::QuantizeJob j;
  std::string method = qtrain::config::name_of(j.ptq.method), observer = qtrain::config::name_of(j.observer),
              kv_cache = qtrain::config::name_of(j.kv_cache);
  po::options_description desc("qtrain quantize: PTQ of a Hugging Face checkpoint to a compressed-tensors folder\nOptions");
  desc.add_options()
      ("model", po::value(&j.model)->required(), "Hugging Face checkpoint folder")
      ("scheme", po::value(&j.scheme)->default_value(j.scheme), "scheme for every linear but lm_head: w<2|3|4|8>a16[-g<N>][-asym], w4a8[-g<N>], w8a8, w8a8-dynamic, fp8, fp8-dynamic, fp8-block, nvfp4a16, nvfp4, mxfp4a16, mxfp4, w4afp8")
      ("rule", po::value(&j.rules)->composing(), "PATTERN=SCHEME, repeatable, first match wins (replaces --scheme)")
      ("calib", po::value(&j.calibration)->required(), "HDF5 token file with calibration text")
      ("output", po::value(&j.output)->required(), "folder to write")
      ("method", po::value(&method)->default_value(method), "rtn|gptq|awq|smoothquant")
      ("observer", po::value(&observer)->default_value(observer), "minmax|ema|percentile|mse (static activation scales)")
      ("kv-cache", po::value(&kv_cache)->default_value(kv_cache), "none|int8|fp8: the KV cache quantized with static scales, calibrated on --calib")
      ("seq-len", po::value(&j.seq_len)->default_value(j.seq_len), "tokens per calibration sequence")
      ("calibration-sequences", po::value(&j.calibration_sequences)->default_value(j.calibration_sequences), "sequences from the start of --calib")
      ("batch-size", po::value(&j.batch_size)->default_value(j.batch_size), "sequences per calibration forward")
      ("gptq-dampening", po::value(&j.ptq.gptq_dampening)->default_value(j.ptq.gptq_dampening), "GPTQ dampening fraction")
      ("gptq-block-size", po::value(&j.ptq.gptq_block_size)->default_value(j.ptq.gptq_block_size), "GPTQ block of columns")
      ("gptq-act-order", po::value(&j.ptq.gptq_act_order)->default_value(j.ptq.gptq_act_order), "GPTQ activation order")
      ("smoothquant-alpha", po::value(&j.ptq.smoothquant_alpha)->default_value(j.ptq.smoothquant_alpha), "SmoothQuant migration strength")
      ("awq-grid", po::value(&j.ptq.awq_grid)->default_value(j.ptq.awq_grid), "AWQ grid points")
      ("eval", po::value(&j.eval_data), "token file: print the exported model's perplexity on it")
      ("eval-seq-len", po::value(&j.eval_seq_len)->default_value(j.eval_seq_len), "window of that perplexity")
      ("device", po::value(&j.device)->default_value(j.device), "auto|cpu|cuda")
      ("dtype", po::value(&j.dtype)->default_value(j.dtype), "compute dtype: auto|fp32|bf16")
      ("max-shard-mb", po::value(&j.max_shard_mb)->default_value(j.max_shard_mb), "largest weight file (MiB); larger exports are sharded with an index");
  if (!parse_subcommand(argc, argv, desc)) return 0;
  j.ptq.method = qtrain::config::parse_choice<qtrain::config::PtqMethod>(method, "--method");
  j.observer = qtrain::config::parse_choice<qtrain::config::ObserverKind>(observer, "--observer");
  j.kv_cache = qtrain::config::parse_choice<qtrain::config::KvCache>(kv_cache, "--kv-cache");
  return qtrain::trainer::run_quantize(j);
}

int export_command(int argc, char** argv) {
  qtrain::trainer::ExportJob j;
  po::options_description desc("qtrain export: a training checkpoint to a compressed-tensors folder (or a pruned or plain Hugging Face one)\nOptions");
  desc.add_options()
      ("checkpoint", po::value(&j.checkpoint)->required(), "checkpoint folder (run.output_dir/checkpoints/step_N)")
      ("output", po::value(&j.output)->required(), "folder to write")
      ("tokenizer", po::value(&j.tokenizer), "folder whose tokenizer files are copied (default: the run's teacher)")
      ("max-shard-mb", po::value(&j.max_shard_mb)->default_value(j.max_shard_mb), "largest weight file (MiB); larger exports are sharded with an index");
  if (!parse_subcommand(argc, argv, desc)) return 0;
  return qtrain::trainer::run_export(j);
}

int run(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "quantize") return quantize_command(argc, argv);
  if (argc > 1 && std::string(argv[1]) == "export") return export_command(argc, argv);
  using namespace qtrain::config;
  const CommandLine cli = parse_command_line(argc, argv, "qtrain");
  if (cli.help || cli.version || cli.print_reference) {
    if (cli.help)
      std::printf("%s\nSubcommands (each with its own --help):\n"
                  "  qtrain quantize --model HF_DIR --scheme S --calib FILE.h5 --output DIR [--method M] ...\n"
                  "                            one-shot PTQ (rtn, gptq, awq, smoothquant) to a compressed-tensors folder\n"
                  "  qtrain export --checkpoint CK --output DIR\n"
                  "                            the compressed-tensors (or pruned) export of a training checkpoint\n",
                  cli.help_text.c_str());
    if (cli.version) std::printf("qtrain %s\n", std::string(project_version()).c_str());
    if (cli.print_reference) std::fputs(reference_markdown().c_str(), stdout);
    return 0;
  }

  const LoadedConfig config = load_config(cli.config_path, cli.overrides);
  if (cli.dry_run) {
    if (!qtrain::dist::is_main()) return 0;  // under mpirun: one copy of the config and estimate, from rank 0
    std::fputs(to_yaml(config).c_str(), stdout);
    using qtrain::config::DeviceChoice;
    const auto device = config.job.model.device;
    const bool gpu = device == DeviceChoice::cuda || (device == DeviceChoice::automatic && qtrain::compat::cuda_available());
    const int ranks = qtrain::dist::world_size();
    std::fputs(qtrain::trainer::describe_estimate(qtrain::trainer::estimate_job(config.job, ranks, gpu), ranks, gpu).c_str(),
               stdout);
    return 0;
  }

  return qtrain::trainer::run_training(config.job, to_yaml(config));
}

}  // namespace

int main(int argc, char** argv) {
  return qtrain::run_cli("qtrain", &argc, &argv, [&] { return run(argc, argv); });
}
