// Multiple-choice scoring: task files, the harness's pair encoding, batched continuation
// log-likelihoods, accuracy with standard errors reduced over ranks.
#include "eval/multiple_choice.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>

#include "common/dist.h"
#include "common/error.h"

namespace qtrain::eval {

namespace {

const nlohmann::json& field(const nlohmann::json& j, const char* name, const char* alias, const std::string& path,
                            int line) {
  if (j.contains(name)) return j[name];
  if (j.contains(alias)) return j[alias];
  throw Error(std::string("missing \"") + name + "\" (or \"" + alias + "\")").file(path).line(line).key(name);
}

McExample parse_example(const std::string& text, const std::string& path, int line) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range (1e999)
    throw Error(std::string("not JSON: ") + e.what()).file(path).line(line);
  }
  if (!j.is_object()) throw Error("not a JSON object").file(path).line(line);
  McExample ex;
  const auto& context = field(j, "context", "query", path, line);
  const auto& choices = field(j, "choices", "endings", path, line);
  const auto& gold = field(j, "gold", "label", path, line);
  if (!context.is_string()) throw Error("must be a string").file(path).line(line).key("context");
  ex.context = context.get<std::string>();
  if (!choices.is_array() || choices.size() < 2)
    throw Error("must be an array of at least 2 strings").file(path).line(line).key("choices");
  for (const auto& c : choices) {
    if (!c.is_string() || c.get<std::string>().empty())
      throw Error("choices must be non-empty strings").file(path).line(line).key("choices");
    ex.choices.push_back(c.get<std::string>());
  }
  const auto digits = gold.is_string() ? gold.get<std::string>() : std::string();
  if (gold.is_number_integer()) {
    ex.gold = gold.get<int64_t>();
  } else if (!digits.empty() && digits.size() < 10 &&
             std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    ex.gold = std::stoll(digits);
  } else {
    throw Error("must be an integer (or a string of one)").file(path).line(line).key("gold");
  }
  if (ex.gold < 0 || ex.gold >= static_cast<int64_t>(ex.choices.size()))
    throw Error("gold index " + std::to_string(ex.gold) + " is not one of the " + std::to_string(ex.choices.size()) +
                " choices")
        .file(path)
        .line(line)
        .key("gold");
  return ex;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

}  // namespace

McTask read_mc_task(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot open the task file").file(path).expected("a JSONL file of multiple-choice examples");
  McTask task;
  task.path = path;
  task.name = std::filesystem::path(path).stem().string();
  std::string text;
  int line = 0;
  while (std::getline(in, text)) {
    ++line;
    if (std::all_of(text.begin(), text.end(), is_space)) continue;
    task.examples.push_back(parse_example(text, path, line));
  }
  if (task.examples.empty()) throw Error("the task file holds no examples").file(path);
  return task;
}

ContinuationTokens encode_pair(const data::Tokenizer& tokenizer, std::string context, std::string continuation,
                               const std::vector<int32_t>& prefix) {
  size_t end = context.size();
  while (end > 0 && is_space(context[end - 1])) --end;
  continuation = context.substr(end) + continuation;
  context.resize(end);
  auto whole = tokenizer.encode(context + continuation);
  auto context_ids = tokenizer.encode(context);
  ContinuationTokens out;
  out.context = prefix;
  out.context.insert(out.context.end(), context_ids.begin(), context_ids.end());
  const auto split = std::min(context_ids.size(), whole.size());
  out.continuation.assign(whole.begin() + static_cast<std::ptrdiff_t>(split), whole.end());
  return out;
}

int64_t character_length(const std::string& text) {
  return std::count_if(text.begin(), text.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; });
}

std::vector<double> continuation_loglikelihoods(model::CausalLMImpl& model,
                                                const std::vector<ContinuationTokens>& requests,
                                                int64_t batch_size, int64_t max_length) {
  QT_REQUIRE(batch_size >= 1 && max_length >= 1, "batch_size and max_length must be positive");
  torch::NoGradGuard no_grad;
  const auto device = model.model->embed_tokens->weight.device();
  // Each request as the harness feeds it: (context + continuation)[-(max_length + 1):][:-1].
  std::vector<std::vector<int64_t>> sequences(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    const auto& r = requests[i];
    if (r.continuation.empty()) throw Error("a choice encodes to no tokens").expected("non-empty continuations");
    if (r.context.empty()) throw Error("empty context and the tokenizer has no BOS/EOS to start from");
    std::vector<int64_t> all(r.context.begin(), r.context.end());
    all.insert(all.end(), r.continuation.begin(), r.continuation.end());
    const auto keep = std::min<int64_t>(static_cast<int64_t>(all.size()), max_length + 1);
    sequences[i].assign(all.end() - keep, all.end());
    if (static_cast<int64_t>(r.continuation.size()) >= keep)
      throw Error("a continuation of " + std::to_string(r.continuation.size()) + " tokens leaves no context within " +
                  std::to_string(max_length) + " positions");
  }
  std::vector<size_t> order(requests.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return sequences[a].size() > sequences[b].size(); });

  std::vector<double> out(requests.size(), 0.0);
  for (size_t first = 0; first < order.size(); first += static_cast<size_t>(batch_size)) {
    const auto count = std::min(order.size() - first, static_cast<size_t>(batch_size));
    const auto width = static_cast<int64_t>(sequences[order[first]].size()) - 1;  // longest input in the batch
    auto inputs = torch::zeros({static_cast<int64_t>(count), width}, torch::kInt64);  // right padding: causal, unseen
    std::vector<int64_t> rows, positions, targets;
    for (size_t b = 0; b < count; ++b) {
      const auto& seq = sequences[order[first + b]];
      const auto n = static_cast<int64_t>(seq.size());
      inputs[static_cast<int64_t>(b)].narrow(0, 0, n - 1).copy_(torch::tensor(std::vector<int64_t>(seq.begin(), seq.end() - 1)));
      const auto cont = static_cast<int64_t>(requests[order[first + b]].continuation.size());
      for (int64_t t = n - 1 - cont; t < n - 1; ++t) {  // position t predicts seq[t + 1]
        rows.push_back(static_cast<int64_t>(b));
        positions.push_back(t);
        targets.push_back(seq[t + 1]);
      }
    }
    auto hidden = model.hidden_states(inputs.to(device));
    auto picked = hidden.index({torch::tensor(rows).to(device), torch::tensor(positions).to(device)});
    auto logp = torch::log_softmax(model.logits(picked).to(torch::kFloat32), -1);
    auto token_logp = logp.gather(-1, torch::tensor(targets).to(device).unsqueeze(-1)).squeeze(-1).to(torch::kFloat64).cpu();
    const auto* values = token_logp.data_ptr<double>();
    for (size_t i = 0; i < rows.size(); ++i) out[order[first + static_cast<size_t>(rows[i])]] += values[i];
  }
  return out;
}

double mean_stderr(const std::vector<double>& scores) {
  const auto n = static_cast<double>(scores.size());
  if (scores.size() < 2) return std::nan("");
  const double mean = std::accumulate(scores.begin(), scores.end(), 0.0) / n;
  double squares = 0;
  for (double s : scores) squares += (s - mean) * (s - mean);
  return std::sqrt(squares / (n - 1)) / std::sqrt(n);
}

McResult evaluate_multiple_choice(model::CausalLMImpl& model, const data::Tokenizer& tokenizer, const McTask& task,
                                  const McOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const int64_t total = options.limit > 0 ? std::min<int64_t>(options.limit, task.examples.size())
                                          : static_cast<int64_t>(task.examples.size());
  const int64_t max_length = options.max_length > 0 ? options.max_length : model.config().max_position_embeddings;
  std::vector<int32_t> prefix;
  if (options.add_bos && tokenizer.bos_id()) prefix.push_back(*tokenizer.bos_id());
  // The harness's start for an empty context: its prefix token (BOS, else EOS).
  std::vector<int32_t> empty_context = prefix;
  if (empty_context.empty() && (tokenizer.bos_id() || tokenizer.eos_id()))
    empty_context.push_back(tokenizer.bos_id() ? *tokenizer.bos_id() : *tokenizer.eos_id());

  // Rank r scores examples r, r + world, ...; every choice's score lands in a flat array
  // (zeros for other ranks' examples) that is summed over ranks.
  std::vector<int64_t> offset(total + 1, 0);
  for (int64_t i = 0; i < total; ++i) offset[i + 1] = offset[i] + static_cast<int64_t>(task.examples[i].choices.size());
  std::vector<ContinuationTokens> requests;
  std::vector<int64_t> slots;
  for (int64_t i = dist::rank(); i < total; i += dist::world_size()) {
    const auto& ex = task.examples[i];
    for (size_t c = 0; c < ex.choices.size(); ++c) {
      auto r = encode_pair(tokenizer, ex.context, options.target_delimiter + ex.choices[c], prefix);
      if (r.context.empty()) r.context = empty_context;
      requests.push_back(std::move(r));
      slots.push_back(offset[i] + static_cast<int64_t>(c));
    }
  }
  const auto scores = continuation_loglikelihoods(model, requests, options.batch_size, max_length);
  std::vector<double> flat(offset[total], 0.0);
  for (size_t i = 0; i < scores.size(); ++i) flat[slots[i]] = scores[i];
  dist::allreduce_sum(flat.data(), static_cast<int>(flat.size()));

  McResult r;
  r.task = task.name;
  r.count = total;
  std::vector<double> hits, hits_norm;
  for (int64_t i = 0; i < total; ++i) {
    const auto& ex = task.examples[i];
    std::vector<double> lls(flat.begin() + offset[i], flat.begin() + offset[i + 1]);
    int64_t best = 0, best_norm = 0;
    for (int64_t c = 1; c < static_cast<int64_t>(lls.size()); ++c) {  // first maximum wins, as np.argmax
      if (lls[c] > lls[best]) best = c;
      const auto norm = [&](int64_t k) { return lls[k] / static_cast<double>(character_length(ex.choices[k])); };
      if (norm(c) > norm(best_norm)) best_norm = c;
    }
    r.predictions.push_back(best);
    r.predictions_norm.push_back(best_norm);
    hits.push_back(best == ex.gold ? 1.0 : 0.0);
    hits_norm.push_back(best_norm == ex.gold ? 1.0 : 0.0);
    r.loglikelihoods.push_back(std::move(lls));
  }
  r.acc = std::accumulate(hits.begin(), hits.end(), 0.0) / static_cast<double>(total);
  r.acc_norm = std::accumulate(hits_norm.begin(), hits_norm.end(), 0.0) / static_cast<double>(total);
  r.acc_stderr = mean_stderr(hits);
  r.acc_norm_stderr = mean_stderr(hits_norm);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace qtrain::eval
