// The module that links libsentencepiece (see backend.h for why it is separate). Built as
// the CMake MODULE target qtrain_sentencepiece; never linked into qtrain_core.
#include "data/sentencepiece/backend.h"

#include <sentencepiece_processor.h>

#include <exception>
#include <memory>
#include <string>

namespace qtrain::data::sentencepiece_backend {
namespace {

class SpmProcessor final : public Processor {
 public:
  sentencepiece::SentencePieceProcessor spm;

  bool encode(std::string_view text, std::vector<int32_t>* ids, std::string* error) const override {
    std::vector<int> out;
    sentencepiece::util::Status status;
    try {
      status = spm.Encode(text, &out);
    } catch (const std::exception& e) {
      *error = e.what();
      return false;
    }
    if (!status.ok()) {
      *error = status.ToString();
      return false;
    }
    ids->assign(out.begin(), out.end());
    return true;
  }
  bool decode(const std::vector<int32_t>& ids, std::string* text, std::string* error) const override {
    sentencepiece::util::Status status;
    try {
      status = spm.Decode(std::vector<int>(ids.begin(), ids.end()), text);
    } catch (const std::exception& e) {
      *error = e.what();
      return false;
    }
    if (!status.ok()) *error = status.ToString();
    return status.ok();
  }
  int32_t piece_size() const override { return spm.GetPieceSize(); }
  int32_t bos_id() const override { return spm.bos_id(); }
  int32_t eos_id() const override { return spm.eos_id(); }
  std::string serialized_model_proto() const override { return spm.serialized_model_proto(); }
};

}  // namespace
}  // namespace qtrain::data::sentencepiece_backend

extern "C" __attribute__((visibility("default"))) qtrain::data::sentencepiece_backend::Processor*
qtrain_sentencepiece_load(const char* path, std::string* error) {
  auto processor = std::make_unique<qtrain::data::sentencepiece_backend::SpmProcessor>();
  // libsentencepiece reports most defects as a Status, but some by throwing (its bundled
  // darts_clone throws for a model with an empty piece: fuzz/regressions/sentencepiece); an
  // exception must not cross this C interface.
  sentencepiece::util::Status status;
  try {
    status = processor->spm.Load(path);
  } catch (const std::exception& e) {
    *error = std::string("libsentencepiece: ") + e.what();
    return nullptr;
  }
  if (!status.ok()) {
    *error = status.ToString();
    return nullptr;
  }
  return processor.release();
}
