#include "common/json_file.h"

#include <fstream>

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

}  // namespace qtrain
