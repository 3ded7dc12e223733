// Text generation with a KV cache: the prompt runs through the model once (prefill), then
// each new token is one single-position forward against the cached keys and values
// (model/kv_cache.h). Decoding is greedy (temperature 0) or sampled with temperature, top-k
// and top-p (nucleus) filtering applied in that order, as transformers' generate() does.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "model/causal_lm.h"

namespace qtrain::eval {

struct SamplingOptions {
  double temperature = 0;  // 0 = greedy (argmax)
  int64_t top_k = 0;       // keep the k most likely tokens; 0 = all
  double top_p = 1.0;      // keep the smallest set whose probability reaches p; 1 = all
  uint64_t seed = 0;       // of the CPU generator the samples are drawn with
};

struct GenerateOptions {
  int64_t max_new_tokens = 32;
  SamplingOptions sampling;
  std::optional<int64_t> eos_id;  // stop once it is generated (it is kept in the output)
  // Called after the prefill and after each decode step, for honest timings on a GPU.
  std::function<void()> synchronize;
};

struct GenerateResult {
  std::vector<int64_t> tokens;  // the generated ids, prompt excluded
  bool stopped_at_eos = false;
  double prefill_seconds = 0;   // prompt forward + first token
  double decode_seconds = 0;    // all later tokens
  int64_t decode_steps = 0;     // single-position forwards after the prefill
};

// Logits [vocab] (fp32) with everything outside the top-k / top-p set at -inf. Ties at the
// top-k boundary keep the lower ids (torch::topk order); top-p always keeps the most likely token.
torch::Tensor filter_logits(const torch::Tensor& logits, int64_t top_k, double top_p);

// Picks next tokens from logits; the generator makes sampling reproducible for a seed.
class TokenSampler {
 public:
  explicit TokenSampler(const SamplingOptions& options);
  int64_t next(const torch::Tensor& logits);  // logits [vocab], any device and dtype

 private:
  SamplingOptions options_;
  at::Generator generator_;
};

// Generates up to max_new_tokens after `prompt` (non-empty ids) for one sequence.
GenerateResult generate(model::CausalLMImpl& model, const std::vector<int64_t>& prompt, const GenerateOptions& options);

}  // namespace qtrain::eval
