// Precompiled header for the core library and the tests: LibTorch's umbrella header
// dominates compile time, so it is parsed once per target.
#pragma once
#include <torch/torch.h>
#include <nlohmann/json.hpp>
#include <map>
#include <memory>
#include <string>
#include <vector>
