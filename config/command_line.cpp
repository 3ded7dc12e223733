// Boost.Program_options definition of the config command line.
#include "config/command_line.h"

#include <boost/program_options.hpp>
#include <sstream>

namespace qtrain::config {

namespace po = boost::program_options;

CommandLine parse_command_line(int argc, const char* const argv[], const std::string& tool) {
  CommandLine cli;
  std::string config_path;
  po::options_description options("Usage: " + tool + " [--config FILE] [--set KEY=VALUE]... [--dry-run]\nOptions");
  options.add_options()
      ("config", po::value(&config_path)->value_name("FILE"),
       "YAML job config (default: the embedded configs/demo.yaml)")
      ("set", po::value(&cli.overrides)->value_name("KEY=VALUE")->composing(),
       "Override one key, e.g. --set training.lr=1e-4; repeatable, later ones win; lists as [a, b]")
      ("dry-run", po::bool_switch(&cli.dry_run), "Print the resolved config as YAML and exit")
      ("print-config-reference", po::bool_switch(&cli.print_reference),
       "Print the reference of every config key as markdown and exit")
      ("help,h", po::bool_switch(&cli.help), "Show this help and exit")
      ("version", po::bool_switch(&cli.version), "Show the version and exit");
  po::variables_map vm;
  po::store(po::command_line_parser(argc, argv).options(options).run(), vm);
  po::notify(vm);
  if (vm.count("config")) cli.config_path = config_path;
  std::ostringstream help;
  help << options;
  cli.help_text = help.str();
  return cli;
}

}  // namespace qtrain::config
