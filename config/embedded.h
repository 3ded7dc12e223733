// What CMake compiles into the binary (cmake/EmbedConfig.cmake): configs/demo.yaml, used
// when qtrain runs without --config, and the project version.
#pragma once
#include <string_view>

namespace qtrain::config {

// The file name errors and the dry-run listing give for the embedded config.
inline constexpr const char* kEmbeddedConfigName = "<embedded configs/demo.yaml>";

// configs/demo.yaml as it was when qtrain was configured.
std::string_view embedded_default_config();

// The CMake project version, e.g. "0.1.0".
std::string_view project_version();

}  // namespace qtrain::config
