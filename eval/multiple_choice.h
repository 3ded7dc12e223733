// Zero-shot multiple-choice accuracy by log-likelihood, as lm-evaluation-harness scores its
// `multiple_choice` tasks: each choice's continuation is target_delimiter + choice, its score
// the sum of log p(continuation tokens | context); acc takes the argmax of the sums,
// acc_norm the argmax of sum / (choice length in characters). Tokenization follows the
// harness's _encode_pair (docs/eval.md). Examples are spread over the MPI ranks.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "model/causal_lm.h"

namespace qtrain::eval {

struct McExample {
  std::string context;
  std::vector<std::string> choices;
  int64_t gold = 0;
};

struct McTask {
  std::string name;  // the file's stem
  std::string path;
  std::vector<McExample> examples;
};

// Reads a JSONL task file: one object per line with "context" (or "query"), "choices" (or
// "endings") and "gold" (or "label"; an integer or a string of one); blank lines skipped.
// Errors name the file, line and key.
McTask read_mc_task(const std::string& path);

// One log-likelihood request: the model predicts `continuation` after `context`.
struct ContinuationTokens {
  std::vector<int32_t> context, continuation;
};

// The harness's _encode_pair: trailing whitespace of the context moves to the front of the
// continuation, then continuation = encode(context + continuation) minus the first
// len(encode(context)) ids. `prefix` (e.g. BOS) goes before both encodings.
ContinuationTokens encode_pair(const data::Tokenizer& tokenizer, std::string context, std::string continuation,
                               const std::vector<int32_t>& prefix = {});

// UTF-8 code points of `text`: Python's len(str), which the harness normalises acc_norm by.
int64_t character_length(const std::string& text);

// Sum of log p(continuation | context) per request, in float64, batched `batch_size`
// requests per forward (longest first, right-padded); a request longer than max_length + 1
// tokens loses context tokens from the left, as the harness truncates.
std::vector<double> continuation_loglikelihoods(model::CausalLMImpl& model,
                                                const std::vector<ContinuationTokens>& requests,
                                                int64_t batch_size, int64_t max_length);

struct McOptions {
  std::string target_delimiter = " ";  // the harness's default
  bool add_bos = false;                 // the harness's add_bos_token (off by default)
  int64_t batch_size = 16;              // requests (context + one choice) per forward
  int64_t max_length = 0;               // 0 = the model's max_position_embeddings
  int64_t limit = 0;                    // first N examples only; 0 = all
};

struct McResult {
  std::string task;
  int64_t count = 0;
  double acc = 0, acc_stderr = 0, acc_norm = 0, acc_norm_stderr = 0;
  std::vector<std::vector<double>> loglikelihoods;  // [example][choice], all ranks'
  std::vector<int64_t> predictions, predictions_norm;
  double seconds = 0;
};

McResult evaluate_multiple_choice(model::CausalLMImpl& model, const data::Tokenizer& tokenizer, const McTask& task,
                                  const McOptions& options);

// The harness's stderr of a mean of 0/1 scores: sample standard deviation / sqrt(n).
double mean_stderr(const std::vector<double>& scores);

}  // namespace qtrain::eval
