// Perplexity of a causal LM on a token file, under the window definition of
// docs/formats.md: consecutive non-overlapping windows of exactly seq_len tokens, the
// shorter tail dropped; in each window every token after the first is predicted from its
// prefix; perplexity = exp(mean NLL over all predicted tokens). Windows are spread over
// the MPI ranks and the per-window sums are reduced in float64.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "data/token_file.h"
#include "model/causal_lm.h"

namespace qtrain::eval {

struct PerplexityOptions {
  int64_t seq_len = 512;
  int64_t batch_size = 8;
  int64_t max_windows = 0;  // 0 = all windows
  bool show_progress = true;
};

struct PerplexityResult {
  double mean_nll = 0;
  double perplexity = 0;
  int64_t tokens = 0;   // predicted tokens: windows * (seq_len - 1)
  int64_t windows = 0;
  std::vector<double> window_nll_sums;  // per window, in file order (all ranks' windows)
  double seconds = 0;
  double tokens_per_second = 0;  // input tokens through the model per second, all ranks
};

// Number of windows the definition yields for a stream of `num_tokens` tokens.
int64_t count_windows(int64_t num_tokens, int64_t seq_len, int64_t max_windows);

// Sum of -log p(target) per row, in float64: hidden [rows, tokens, hidden], targets
// [rows, tokens]. Logits are computed in chunks so that [tokens x vocab] fp32 is never
// materialised at once.
torch::Tensor sequence_nll_sums(model::CausalLMImpl& model, const torch::Tensor& hidden, const torch::Tensor& targets);

PerplexityResult evaluate_perplexity(model::CausalLMImpl& model, const data::TokenFile& tokens,
                                     const PerplexityOptions& options);

}  // namespace qtrain::eval
