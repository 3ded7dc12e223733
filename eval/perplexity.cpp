// Windowed perplexity: batches of windows through the model, chunked log-softmax, float64
// sums, windows round-robin over ranks.
#include "eval/perplexity.h"

#include <chrono>
#include <cmath>

#include "common/dist.h"
#include "common/error.h"
#include "common/progress.h"

namespace qtrain::eval {

namespace {
// Logit elements per chunk (fp32): 2^26 = 256 MiB.
constexpr int64_t kLogitChunkElements = int64_t{1} << 26;
}  // namespace

int64_t count_windows(int64_t num_tokens, int64_t seq_len, int64_t max_windows) {
  const int64_t n = num_tokens / seq_len;
  return max_windows > 0 ? std::min(n, max_windows) : n;
}

torch::Tensor sequence_nll_sums(model::CausalLMImpl& model, const torch::Tensor& hidden, const torch::Tensor& targets) {
  const auto rows = hidden.size(0), tokens = hidden.size(1);
  const auto flat_hidden = hidden.reshape({rows * tokens, hidden.size(2)});
  const auto flat_targets = targets.reshape({rows * tokens});
  const int64_t chunk = std::max<int64_t>(1, kLogitChunkElements / model.config().vocab_size);
  std::vector<torch::Tensor> nll;
  for (int64_t begin = 0; begin < rows * tokens; begin += chunk) {
    const auto len = std::min(chunk, rows * tokens - begin);
    auto logits = model.logits(flat_hidden.narrow(0, begin, len)).to(torch::kFloat32);
    auto logp = torch::log_softmax(logits, -1);
    nll.push_back(-logp.gather(-1, flat_targets.narrow(0, begin, len).unsqueeze(-1)).squeeze(-1));
  }
  return torch::cat(nll).view({rows, tokens}).to(torch::kFloat64).sum(1);
}

PerplexityResult evaluate_perplexity(model::CausalLMImpl& model, const data::TokenFile& tokens,
                                     const PerplexityOptions& options) {
  QT_REQUIRE(options.seq_len >= 2, "perplexity windows need at least 2 tokens");
  const int64_t windows = count_windows(tokens.size(), options.seq_len, options.max_windows);
  if (windows == 0)
    throw Error("the file holds " + std::to_string(tokens.size()) + " tokens, fewer than one window of " +
                std::to_string(options.seq_len))
        .file(tokens.path())
        .expected("at least seq_len tokens");
  if (tokens.vocab_size() && *tokens.vocab_size() > model.config().vocab_size)
    throw Error("token file vocabulary (" + std::to_string(*tokens.vocab_size()) + ") is larger than the model's")
        .file(tokens.path())
        .key(data::kVocabSizeAttribute)
        .expected("<= " + std::to_string(model.config().vocab_size));

  torch::NoGradGuard no_grad;
  const auto device = model.model->embed_tokens->weight.device();
  const int rank = dist::rank(), world = dist::world_size();
  std::vector<double> sums(windows, 0.0);  // this rank's windows filled, others 0: summed over ranks
  ProgressBar progress("eval", windows, "windows");
  const auto start = std::chrono::steady_clock::now();
  int64_t done = 0;
  // Rank r evaluates windows r, r + world, ...; batches of consecutive ones of its own.
  std::vector<int64_t> mine;
  for (int64_t w = rank; w < windows; w += world) mine.push_back(w);
  // Every rank runs the same number of forwards (the most any rank has; a rank short of
  // windows runs its first one again and drops the result): a sharded model gathers its
  // layers with collectives in each forward (trainer/sharded_model.h).
  const int64_t most = (windows + world - 1) / world;
  const int64_t batches = (most + options.batch_size - 1) / options.batch_size;
  for (int64_t b = 0; b < batches; ++b) {
    const size_t first = static_cast<size_t>(b * options.batch_size);
    if (first >= mine.size()) {
      const int64_t window = mine.empty() ? 0 : mine.front();
      model.hidden_states(tokens.read(window * options.seq_len, options.seq_len - 1).unsqueeze(0).to(device));
      continue;
    }
    const auto count = std::min<int64_t>(options.batch_size, static_cast<int64_t>(mine.size() - first));
    std::vector<torch::Tensor> rows;
    for (int64_t i = 0; i < count; ++i) {
      const auto begin = mine[first + i] * options.seq_len;
      auto ids = tokens.read(begin, options.seq_len);
      data::check_token_range(ids, model.config().vocab_size, tokens.path(), begin);
      rows.push_back(ids);
    }
    auto batch = torch::stack(rows).to(device);
    auto hidden = model.hidden_states(batch.narrow(1, 0, options.seq_len - 1));
    auto window_sums = sequence_nll_sums(model, hidden, batch.narrow(1, 1, options.seq_len - 1)).cpu();
    for (int64_t i = 0; i < count; ++i) sums[mine[first + i]] = window_sums[i].item<double>();
    done += count * world;
    if (options.show_progress)
      progress.update(std::min(done, windows), static_cast<double>(std::min(done, windows) * options.seq_len), "tok");
  }
  if (options.show_progress) progress.finish();
  dist::allreduce_sum(sums.data(), static_cast<int>(sums.size()));
  // A NaN or Inf loss (weights holding NaN or Inf, or an overflow in the model) is an error,
  // never a "perplexity -nan": every rank sees the same sums, so every rank throws.
  for (size_t i = 0; i < sums.size(); ++i)
    if (!std::isfinite(sums[i]))
      throw Error("the model's loss is not finite on window " + std::to_string(i) + " of " +
                  std::to_string(sums.size()) + " (logits hold NaN or Inf)")
          .expected("a model whose weights and logits are finite");

  PerplexityResult r;
  r.windows = windows;
  r.tokens = windows * (options.seq_len - 1);
  double total = 0;
  for (double s : sums) total += s;
  r.mean_nll = total / static_cast<double>(r.tokens);
  r.perplexity = std::exp(r.mean_nll);
  r.window_nll_sums = std::move(sums);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.tokens_per_second = static_cast<double>(windows * options.seq_len) / r.seconds;
  return r;
}

}  // namespace qtrain::eval
