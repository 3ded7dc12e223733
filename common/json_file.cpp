#include "common/json_file.h"

#include <fstream>
#include <memory>
#include <set>
#include <vector>

#include "common/error.h"

namespace qtrain {

nlohmann::json read_json_file(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  if (!in) throw Error("cannot open JSON file").file(path).key(key);
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {  // parse_error, and out_of_range for 1e999
    throw Error(std::string("malformed JSON: ") + e.what()).file(path).key(key);
  }
}

nlohmann::json::parser_callback_t duplicate_key_guard(const std::string& path) {
  auto keys = std::make_shared<std::vector<std::set<std::string>>>();  // one set per open object
  return [keys, path](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (event == E::object_start) keys->emplace_back();
    if (event == E::object_end && !keys->empty()) keys->pop_back();
    if (event == E::key && !keys->empty() && !keys->back().insert(parsed.get<std::string>()).second)
      throw Error("the key occurs twice in one JSON object").file(path).key(parsed.get<std::string>());
    return true;
  };
}

}  // namespace qtrain
