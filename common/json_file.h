// Reading a JSON file that a user hands qtrain (a student config, a run's records): every
// defect, from a missing file to a number that overflows a double, is a qtrain::Error
// naming the file and the config key that pointed at it.
#pragma once
#include <nlohmann/json.hpp>

#include <string>

namespace qtrain {

nlohmann::json read_json_file(const std::string& path, const std::string& key);

// A parser callback that refuses an object holding the same key twice (JSON allows it, and
// nlohmann keeps the last one silently: a second tensor entry in a safetensors header, or a
// second config group of one name, would shadow the first): qtrain::Error naming `path`
// and the key. One callback per parse: json::parse(text, duplicate_key_guard(path)).
nlohmann::json::parser_callback_t duplicate_key_guard(const std::string& path);

}  // namespace qtrain
