// qtrain: the training job. Reads the config once (config/load.h), then trains
// (trainer/run.h), or prints the resolved config with --dry-run.
#include <cstdio>
#include <string>

#include "common/cli_main.h"
#include "config/command_line.h"
#include "config/embedded.h"
#include "config/load.h"
#include "config/print.h"
#include "trainer/run.h"

namespace {

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

  return qtrain::trainer::run_training(config.job, to_yaml(config));
}

}  // namespace

int main(int argc, char** argv) {
  return qtrain::run_cli("qtrain", &argc, &argv, [&] { return run(argc, argv); });
}
