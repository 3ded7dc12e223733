// Prefill + cached single-token decode steps, and the sampling rules (transformers'
// TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper).
#include "eval/generate.h"

#include <ATen/CPUGeneratorImpl.h>

#include <chrono>
#include <limits>

#include "common/error.h"

namespace qtrain::eval {

torch::Tensor filter_logits(const torch::Tensor& logits, int64_t top_k, double top_p) {
  auto out = logits.to(torch::kFloat32).clone();
  const auto vocab = out.size(-1);
  const auto minus_inf = -std::numeric_limits<float>::infinity();
  if (top_k > 0 && top_k < vocab) {
    const auto kept = std::get<1>(out.topk(top_k));
    auto mask = torch::ones_like(out, torch::kBool);
    mask.index_fill_(0, kept, false);
    out.masked_fill_(mask, minus_inf);
  }
  if (top_p < 1.0) {
    auto [sorted, order] = out.sort(/*dim=*/-1, /*descending=*/true);
    const auto probs = torch::softmax(sorted, -1);
    // A token stays when the probability of the more likely ones is still below p.
    auto drop_sorted = (probs.cumsum(-1) - probs) >= top_p;
    drop_sorted[0] = false;
    auto drop = torch::zeros_like(drop_sorted).scatter(0, order, drop_sorted);
    out.masked_fill_(drop, minus_inf);
  }
  return out;
}

TokenSampler::TokenSampler(const SamplingOptions& options)
    : options_(options), generator_(at::detail::createCPUGenerator(options.seed)) {
  if (options.temperature < 0) throw Error("must be >= 0 (0 = greedy)").key("temperature");
  if (options.top_k < 0) throw Error("must be >= 0 (0 = all tokens)").key("top_k");
  if (!(options.top_p > 0 && options.top_p <= 1)) throw Error("must be in (0, 1]").key("top_p");
}

int64_t TokenSampler::next(const torch::Tensor& logits) {
  if (options_.temperature == 0) return logits.argmax(-1).item<int64_t>();
  auto scaled = logits.to(torch::kCPU, torch::kFloat32) / options_.temperature;
  const auto probs = torch::softmax(filter_logits(scaled, options_.top_k, options_.top_p), -1);
  return at::multinomial(probs, 1, /*replacement=*/false, generator_).item<int64_t>();
}

GenerateResult generate(model::CausalLMImpl& model, const std::vector<int64_t>& prompt,
                        const GenerateOptions& options) {
  if (prompt.empty()) throw Error("the prompt holds no tokens").expected("at least one prompt token");
  if (options.max_new_tokens < 1) throw Error("must be at least 1").key("max_new_tokens");
  const auto vocab = model.config().vocab_size;
  for (auto id : prompt)
    if (id < 0 || id >= vocab)
      throw Error("prompt token " + std::to_string(id) + " is outside the model's vocabulary")
          .expected("ids in [0, " + std::to_string(vocab) + ")");
  torch::NoGradGuard no_grad;
  const auto device = model.model->embed_tokens->weight.device();
  TokenSampler sampler(options.sampling);
  auto cache = model.make_kv_cache(static_cast<int64_t>(prompt.size()) + options.max_new_tokens);
  auto sync = [&] {
    if (options.synchronize) options.synchronize();
  };
  using clock = std::chrono::steady_clock;
  GenerateResult r;

  const auto start = clock::now();
  auto ids = torch::tensor(prompt, torch::kInt64).to(device).unsqueeze(0);
  auto logits = model.forward(ids, cache);  // prefill: the whole prompt at once
  int64_t token = sampler.next(logits[0][-1]);
  sync();
  const auto prefilled = clock::now();
  r.prefill_seconds = std::chrono::duration<double>(prefilled - start).count();
  r.tokens.push_back(token);
  while (static_cast<int64_t>(r.tokens.size()) < options.max_new_tokens &&
         !(options.eos_id && token == *options.eos_id)) {
    ids = torch::full({1, 1}, token, torch::dtype(torch::kInt64).device(device));
    logits = model.forward(ids, cache);  // one position against the cache
    token = sampler.next(logits[0][-1]);
    r.tokens.push_back(token);
    ++r.decode_steps;
  }
  sync();
  r.decode_seconds = std::chrono::duration<double>(clock::now() - prefilled).count();
  r.stopped_at_eos = options.eos_id && token == *options.eos_id;
  return r;
}

}  // namespace qtrain::eval
