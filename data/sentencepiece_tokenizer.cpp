// SentencePiece adapter. encode_with_special_tokens() adds BOS only, as Llama 2's and
// Mistral's tokenizer_config.json ask (add_bos_token true, add_eos_token false).
#include "data/sentencepiece_tokenizer.h"

#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>

#include "common/error.h"
#include "data/fingerprint.h"
#include "data/sentencepiece/backend.h"

namespace qtrain::data {
namespace {

// RTLD_DEEPBIND makes the module resolve protobuf in its own libsentencepiece first, never in
// LibTorch's. AddressSanitizer cannot run a deep-bound library (its interceptors would be
// bypassed), so the sanitized fuzz build (QTRAIN_FUZZ) opens it without; its fuzz target
// loads no LibTorch protobuf code that could clash.
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define QTRAIN_NO_DEEPBIND 1
#endif
#endif
#ifdef QTRAIN_NO_DEEPBIND
constexpr int kDeepBind = 0;
#else
constexpr int kDeepBind = RTLD_DEEPBIND;
#endif

// Opens the module once per process; the handle is never closed (objects from it may live
// until exit).
sentencepiece_backend::LoadFunction load_function() {
  static std::once_flag once;
  static sentencepiece_backend::LoadFunction function = nullptr;
  static std::string failure;
  std::call_once(once, [] {
    for (const std::string& candidate : sentencepiece_module_candidates()) {
      if (!std::filesystem::exists(candidate)) continue;
      void* handle = ::dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL | kDeepBind);
      if (!handle) {
        failure += std::string(failure.empty() ? "" : "; ") + ::dlerror();
        continue;
      }
      function = reinterpret_cast<sentencepiece_backend::LoadFunction>(
          ::dlsym(handle, sentencepiece_backend::kLoadFunctionName));
      if (function) return;
      failure += "; " + candidate + " lacks " + sentencepiece_backend::kLoadFunctionName;
    }
  });
  if (!function) {
    std::string tried;
    for (const auto& c : sentencepiece_module_candidates()) tried += (tried.empty() ? "" : ", ") + c;
    throw Error("cannot load the SentencePiece module (tried " + tried + ")" + (failure.empty() ? "" : ": " + failure))
        .expected("the qtrain_sentencepiece module built with qtrain, or $QTRAIN_SENTENCEPIECE_MODULE");
  }
  return function;
}

}  // namespace

std::vector<std::string> sentencepiece_module_candidates() {
  std::vector<std::string> out;
  if (const char* env = std::getenv("QTRAIN_SENTENCEPIECE_MODULE")) out.emplace_back(env);
#ifdef QTRAIN_SENTENCEPIECE_MODULE
  out.emplace_back(QTRAIN_SENTENCEPIECE_MODULE);
#endif
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) out.push_back((exe.parent_path() / "libqtrain_sentencepiece.so").string());
  return out;
}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

std::unique_ptr<SentencePieceTokenizer> SentencePieceTokenizer::load(const std::string& path) {
  const auto load = load_function();
  std::string error;
  std::unique_ptr<sentencepiece_backend::Processor> processor(load(path.c_str(), &error));
  if (!processor) throw Error("cannot load SentencePiece model: " + error).file(path);
  std::unique_ptr<SentencePieceTokenizer> t(new SentencePieceTokenizer());
  t->processor_ = std::move(processor);
  t->source_ = path;
  if (t->processor_->bos_id() >= 0) {
    t->bos_id_ = t->processor_->bos_id();
    t->special_prefix_ = {*t->bos_id_};
  }
  if (t->processor_->eos_id() >= 0) t->eos_id_ = t->processor_->eos_id();
  // The serialized model proto holds the pieces, scores, types and the normalizer spec:
  // everything that decides the ids.
  t->fingerprint_ =
      FingerprintBuilder("qtrain-tokenizer/sentencepiece/v1").add(t->processor_->serialized_model_proto()).finish();
  return t;
}

std::vector<int32_t> SentencePieceTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  std::string error;
  if (!processor_->encode(text, &ids, &error)) throw Error("SentencePiece encode failed: " + error).file(source_);
  return ids;
}

std::string SentencePieceTokenizer::decode(const std::vector<int32_t>& ids) const {
  const int64_t size = vocab_size();
  for (int32_t id : ids)
    if (id < 0 || id >= size)
      throw Error("token id " + std::to_string(id) + " is outside the vocabulary")
          .file(source_)
          .expected("0 <= id < " + std::to_string(size));
  std::string text, error;
  if (!processor_->decode(ids, &text, &error)) throw Error("SentencePiece decode failed: " + error).file(source_);
  return text;
}

int64_t SentencePieceTokenizer::vocab_size() const { return processor_->piece_size(); }

}  // namespace qtrain::data
