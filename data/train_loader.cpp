// TrainLoader: step layout, the prefetch thread and its hand-over queue.
#include "data/train_loader.h"

#include <chrono>

#include "common/error.h"
#include "data/token_file.h"

namespace qtrain::data {

nlohmann::json SamplerState::to_json() const {
  return {{"epoch", epoch}, {"position", position}, {"consumed_samples", consumed_samples}};
}

SamplerState SamplerState::from_json(const nlohmann::json& j) {
  SamplerState s;
  s.epoch = j.at("epoch").get<int64_t>();
  s.position = j.at("position").get<int64_t>();
  s.consumed_samples = j.at("consumed_samples").get<int64_t>();
  return s;
}

namespace {

SampleOrder make_order(const std::string& path, const LoaderOptions& o) {
  auto file = TokenFile::open(path);
  check_vocabulary(file, o.vocab_size);
  SampleOrder order(file.size(), o.seq_len, o.seed, o.shuffle);
  if (order.num_samples() < o.global_batch_size)
    throw Error("the file holds " + std::to_string(order.num_samples()) + " samples of " + std::to_string(o.seq_len) +
                " tokens, fewer than one global batch of " + std::to_string(o.global_batch_size))
        .file(path)
        .expected("at least global_batch_size * (seq_len + 1) tokens");
  return order;
}

}  // namespace

TrainLoader::TrainLoader(std::string path, LoaderOptions options, SamplerState start)
    : path_(std::move(path)), options_(options), order_(make_order(path_, options_)) {
  const int64_t per_step = options_.micro_batch_size * options_.world_size;
  if (options_.global_batch_size % per_step != 0)
    throw Error("global_batch_size " + std::to_string(options_.global_batch_size) +
                " is not a multiple of micro_batch_size x ranks = " + std::to_string(per_step))
        .key("data.global_batch_size")
        .expected("a multiple of " + std::to_string(per_step));
  accumulation_ = options_.global_batch_size / per_step;
  if (start.position + options_.global_batch_size > order_.num_samples() && start.position != 0)
    start = {start.epoch + 1, 0, start.consumed_samples};
  worker_ = std::thread([this, start] { run_worker(start); });
}

TrainLoader::~TrainLoader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (worker_.joinable()) worker_.join();
}

std::vector<std::vector<int64_t>> TrainLoader::step_samples(const SamplerState& state, SamplerState* next) const {
  SamplerState s = state;
  if (s.position + options_.global_batch_size > order_.num_samples()) s = {s.epoch + 1, 0, s.consumed_samples};
  const int64_t m = options_.micro_batch_size, world = options_.world_size;
  std::vector<std::vector<int64_t>> micro(accumulation_);
  for (int64_t j = 0; j < accumulation_; ++j) {
    const int64_t slot = j * world + options_.rank;
    for (int64_t i = 0; i < m; ++i) micro[j].push_back(order_.sample_at(s.epoch, s.position + slot * m + i));
  }
  s.position += options_.global_batch_size;
  s.consumed_samples += options_.global_batch_size;
  if (next) *next = s;
  return micro;
}

void TrainLoader::run_worker(SamplerState state) {
  try {
    auto file = TokenFile::open(path_);
    const int64_t len = options_.seq_len;
    while (true) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [&] { return stopping_ || static_cast<int>(queue_.size()) < options_.prefetch_steps; });
        if (stopping_) return;
      }
      StepBatch step;
      step.start = state;
      for (const auto& samples : step_samples(state, &step.next)) {
        auto rows = torch::empty({static_cast<int64_t>(samples.size()), len + 1}, torch::kInt64);
        for (size_t i = 0; i < samples.size(); ++i) {
          const auto offset = order_.token_offset(samples[i]);
          auto ids = file.read(offset, len + 1);
          if (options_.vocab_size > 0) check_token_range(ids, options_.vocab_size, path_, offset);
          rows[static_cast<int64_t>(i)].copy_(ids);
        }
        // Contiguous, so that a pinned copy goes to the device asynchronously: a strided
        // view would first be gathered into pageable memory, and that copy waits for the GPU.
        auto input_ids = rows.narrow(1, 0, len).contiguous(), labels = rows.narrow(1, 1, len).contiguous();
        if (options_.pin_memory) input_ids = input_ids.pin_memory(), labels = labels.pin_memory();
        step.micro_batches.push_back({input_ids, labels, samples});
      }
      state = step.next;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        queue_.push_back(std::move(step));
      }
      changed_.notify_all();
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    failure_ = std::current_exception();
    changed_.notify_all();
  }
}

StepBatch TrainLoader::next() {
  const auto start = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return !queue_.empty() || failure_; });
  wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (queue_.empty()) std::rethrow_exception(failure_);
  StepBatch step = std::move(queue_.front());
  queue_.pop_front();
  lock.unlock();
  changed_.notify_all();
  return step;
}

}  // namespace qtrain::data
