// Command-line parsing shared by the bench programs: parse, answer --help, check required.
#pragma once
#include <boost/program_options.hpp>

#include <iostream>

namespace qtrain::bench {

// Parses argv into desc's variables; prints desc and returns false on --help.
inline bool parse_options(const boost::program_options::options_description& desc, int argc, char** argv) {
  namespace po = boost::program_options;
  po::variables_map vm;
  po::store(po::parse_command_line(argc, argv, desc), vm);
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return false;
  }
  po::notify(vm);
  return true;
}

}  // namespace qtrain::bench
