// qtrain: the training job. Reads the config once (config/load.h). Training itself is not
// built yet: for now the job loads the teacher and reports its perplexity on
// data.validation (eval section), or prints the resolved config with --dry-run.
#include <cstdio>
#include <string>

#include "common/cli_main.h"
#include "common/device.h"
#include "common/dist.h"
#include "config/command_line.h"
#include "config/embedded.h"
#include "config/load.h"
#include "config/print.h"
#include "data/token_file.h"
#include "eval/perplexity.h"
#include "model/hf_checkpoint.h"

namespace {

// The job as far as it exists: the teacher's perplexity on the validation tokens.
int evaluate_teacher(const qtrain::config::JobConfig& job) {
  const auto device = qtrain::resolve_device(job.model.device);
  const auto dtype = qtrain::resolve_dtype(job.model.dtype, device);
  if (job.data.validation.empty())
    throw qtrain::Error("nothing to do: data.validation is empty").key("data.validation").expected("an HDF5 token file");
  auto tokens = qtrain::data::TokenFile::open(job.data.validation);
  auto teacher = qtrain::model::load_causal_lm(job.model.teacher, {device, dtype});
  qtrain::eval::PerplexityOptions options;
  options.seq_len = job.eval.seq_len;
  options.batch_size = job.eval.batch_size;
  options.max_windows = job.eval.max_windows;
  const auto r = qtrain::eval::evaluate_perplexity(*teacher, tokens, options);
  if (qtrain::dist::is_main())
    std::printf("qtrain: teacher %s on %s: perplexity %.4f (%lld windows of %lld tokens, %d ranks, %s)\n"
                "qtrain: training is not built yet; this job evaluates the teacher only\n",
                job.model.teacher.c_str(), job.data.validation.c_str(), r.perplexity, (long long)r.windows,
                (long long)options.seq_len, qtrain::dist::world_size(), qtrain::describe(device, dtype).c_str());
  return 0;
}

int run(int argc, char** argv) {
  using namespace qtrain::config;
  const CommandLine cli = parse_command_line(argc, argv, "qtrain");
  if (cli.help || cli.version || cli.print_reference) {
    if (cli.help) std::fputs(cli.help_text.c_str(), stdout);
    if (cli.version) std::printf("qtrain %s\n", std::string(project_version()).c_str());
    if (cli.print_reference) std::fputs(reference_markdown().c_str(), stdout);
    return 0;
  }

  const LoadedConfig config = load_config(cli.config_path, cli.overrides);
  if (cli.dry_run) {
    std::fputs(to_yaml(config).c_str(), stdout);
    return 0;
  }

  return evaluate_teacher(config.job);
}

}  // namespace

int main(int argc, char** argv) {
  return qtrain::run_cli("qtrain", &argc, &argv, [&] { return run(argc, argv); });
}
