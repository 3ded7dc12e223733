// Sizes from the safetensors headers and config.json's quantization_config targets.
#include "quant/export_size.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "common/error.h"
#include "model/safetensors.h"
#include "quant/compressed_tensors.h"

namespace qtrain::quant {

namespace fs = std::filesystem;

double FolderSize::bits_per_weight() const {
  if (quantized_weights > 0) return 8.0 * static_cast<double>(quantized_bytes) / static_cast<double>(quantized_weights);
  return elements > 0 ? 8.0 * static_cast<double>(tensor_bytes) / static_cast<double>(elements) : 0.0;
}

namespace {

std::set<std::string> quantized_targets(const fs::path& dir) {
  std::set<std::string> out;
  std::ifstream in(dir / "config.json");
  if (!in) return out;
  const auto config = nlohmann::json::parse(in, nullptr, false);
  if (config.is_discarded() || !config.contains("quantization_config")) return out;
  // Read only for sizes, but a damaged config must still be an Error naming the key, never
  // a JSON type error (issue 24: a non-string target was "internal error", status 1).
  const auto file = (dir / "config.json").string();
  const auto& quantization = config["quantization_config"];
  if (!quantization.is_object()) throw Error("not an object").file(file).key("quantization_config");
  const auto groups = quantization.value("config_groups", nlohmann::json::object());
  if (!groups.is_object()) throw Error("not an object").file(file).key("quantization_config.config_groups");
  for (const auto& [name, group] : groups.items()) {
    const auto key = "quantization_config.config_groups." + name;
    if (!group.is_object()) throw Error("not an object").file(file).key(key);
    if (!group.contains("weights") || group["weights"].is_null()) continue;
    const auto targets = group.value("targets", nlohmann::json::array());
    if (!targets.is_array()) throw Error("not a list").file(file).key(key + ".targets").expected("a list of strings");
    for (size_t i = 0; i < targets.size(); ++i) {
      if (!targets[i].is_string())
        throw Error("not a string").file(file).key(key + ".targets[" + std::to_string(i) + "]").expected(
            "module names or re: patterns");
      out.insert(targets[i].get<std::string>());
    }
  }
  return out;
}

}  // namespace

FolderSize folder_size(const std::string& dir) {
  if (!fs::is_directory(dir)) throw Error("not a folder").file(dir);
  FolderSize size;
  const auto targets = quantized_targets(dir);
  size.quantized_linears = static_cast<int64_t>(targets.size());
  for (const auto& item : fs::directory_iterator(dir)) {
    const auto name = item.path().filename().string();
    if (name.rfind("model", 0) != 0 || item.path().extension() != ".safetensors") continue;  // not e.g. reference data
    size.file_bytes += static_cast<int64_t>(fs::file_size(item.path()));
    const auto file = model::SafetensorsFile::open(item.path().string());
    for (const auto& entry : file->entries()) {
      const auto bytes = static_cast<int64_t>(entry.end - entry.begin);
      int64_t elements = 1;
      for (auto d : entry.shape) elements *= d;
      size.tensor_bytes += bytes;
      size.elements += elements;
      const auto dot = entry.name.rfind('.');
      const auto module = entry.name.substr(0, dot);
      if (dot == std::string::npos || !targets.count(module)) continue;
      size.quantized_bytes += bytes;
      const auto suffix = entry.name.substr(dot);
      if (suffix == std::string(".") + ct::kWeightShape) {
        const auto shape = file->tensor(entry.name).to(torch::kInt64);
        size.quantized_weights += shape.prod().item<int64_t>();
      } else if (suffix == std::string(".") + ct::kWeight) {
        size.quantized_weights += elements;
      } else if (suffix == std::string(".") + ct::kWeightPacked && std::string(entry.dtype->name) == "U8") {
        size.quantized_weights += 2 * elements;  // FP4 (NVFP4, MXFP4): two codes per byte, no weight_shape
      }
    }
  }
  return size;
}

}  // namespace qtrain::quant
