// A model's config.json (model::ModelConfig::from_json), as every loader reads it first.
// Malformed JSON and qtrain::Error are expected answers; anything else is a finding.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "model/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(data, data + size);
  } catch (const nlohmann::json::exception&) {  // as the loaders catch it: parse_error, out_of_range
    return 0;
  }
  try {
    const auto c = qtrain::model::ModelConfig::from_json(j, "config.json");
    (void)c.to_json();
    (void)c.num_parameters();
  } catch (const qtrain::Error&) {
  }
  return 0;
}
