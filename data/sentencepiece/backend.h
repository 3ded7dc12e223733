// The boundary between qtrain and libsentencepiece. Debian's libsentencepiece exports the
// protobuf-lite it bundles, which clashes with the libprotobuf that Debian's LibTorch loads
// (the process crashes in static initialisation). So libsentencepiece is only ever loaded
// through a small module (backend.cpp), opened with dlopen(RTLD_LOCAL | RTLD_DEEPBIND): its
// symbols stay out of the process's global scope and bind to its own protobuf copy. Only this
// interface (virtual calls, no symbols to resolve) crosses the boundary.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qtrain::data::sentencepiece_backend {

class Processor {
 public:
  virtual ~Processor() = default;
  // Each returns false and sets *error on failure.
  virtual bool encode(std::string_view text, std::vector<int32_t>* ids, std::string* error) const = 0;
  virtual bool decode(const std::vector<int32_t>& ids, std::string* text, std::string* error) const = 0;
  virtual int32_t piece_size() const = 0;
  virtual int32_t bos_id() const = 0;  // -1 if the model has none
  virtual int32_t eos_id() const = 0;
  virtual std::string serialized_model_proto() const = 0;
};

// The module's one exported function: loads a .model file, or returns nullptr and sets *error.
using LoadFunction = Processor* (*)(const char* path, std::string* error);
inline constexpr const char* kLoadFunctionName = "qtrain_sentencepiece_load";

}  // namespace qtrain::data::sentencepiece_backend
