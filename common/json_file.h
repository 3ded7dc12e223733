// Reading a JSON file that a user hands qtrain (a student config, a run's records): every
// defect, from a missing file to a number that overflows a double, is a qtrain::Error
// naming the file and the config key that pointed at it.
#pragma once
#include <nlohmann/json.hpp>

#include <string>

namespace qtrain {

nlohmann::json read_json_file(const std::string& path, const std::string& key);

}  // namespace qtrain
