// The training reader: packs fixed-length samples from a token file in the global order of
// SampleOrder, hands each rank its disjoint share of every optimizer step's global batch,
// and prefetches steps on a background thread so that the accelerator never waits on it.
//
// Step layout: a global batch is `global_batch_size` consecutive positions of the epoch's
// order, cut into slots of `micro_batch_size`; rank r takes slots r, r + W, r + 2W, ... as
// its micro-batches (W ranks, k = global / (micro * W) micro-batches each). The samples of a
// step are therefore the same for any W, which is what makes a run resumable on a
// different number of ranks. A partial global batch at the end of an epoch is dropped.
#pragma once
#include <torch/torch.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "data/sample_order.h"

namespace qtrain::data {

// Where the next step starts; small, and independent of the number of ranks.
struct SamplerState {
  int64_t epoch = 0;
  int64_t position = 0;          // samples of this epoch already consumed
  int64_t consumed_samples = 0;  // over all epochs
  nlohmann::json to_json() const;
  static SamplerState from_json(const nlohmann::json& j);
  bool operator==(const SamplerState& o) const {
    return epoch == o.epoch && position == o.position && consumed_samples == o.consumed_samples;
  }
};

struct LoaderOptions {
  int64_t seq_len = 512;
  int64_t micro_batch_size = 4;
  int64_t global_batch_size = 32;
  uint64_t seed = 1234;
  bool shuffle = true;
  int rank = 0;
  int world_size = 1;
  int prefetch_steps = 2;    // steps read ahead
  int64_t vocab_size = 0;    // > 0: every id is checked against it
  bool pin_memory = false;   // page-locked host tensors, for asynchronous copies to a GPU
};

struct MicroBatch {
  torch::Tensor input_ids;  // [micro_batch_size, seq_len] int64
  torch::Tensor labels;     // [micro_batch_size, seq_len] int64: input_ids shifted by one
  std::vector<int64_t> samples;  // the sample indices, for tests and debugging
};

struct StepBatch {
  std::vector<MicroBatch> micro_batches;  // this rank's k micro-batches
  SamplerState start, next;               // the state before and after this step
};

class TrainLoader {
 public:
  // Opens `path` (validating it on the calling thread), then starts reading at `start`.
  TrainLoader(std::string path, LoaderOptions options, SamplerState start = {});
  ~TrainLoader();
  TrainLoader(const TrainLoader&) = delete;
  TrainLoader& operator=(const TrainLoader&) = delete;

  // The next step's micro-batches; blocks until the worker has read them.
  StepBatch next();
  // Micro-batches per rank per step.
  int64_t accumulation_steps() const { return accumulation_; }
  const SampleOrder& order() const { return order_; }
  // Seconds next() spent waiting for the worker (0 when prefetching keeps up).
  double wait_seconds() const { return wait_seconds_; }

  // The samples of the step that starts at `state`, for this rank, and the state after it.
  std::vector<std::vector<int64_t>> step_samples(const SamplerState& state, SamplerState* next) const;

 private:
  void run_worker(SamplerState state);
  std::string path_;
  LoaderOptions options_;
  SampleOrder order_;
  int64_t accumulation_ = 1;
  std::deque<StepBatch> queue_;
  std::mutex mutex_;
  std::condition_variable changed_;
  bool stopping_ = false;
  std::exception_ptr failure_;
  double wait_seconds_ = 0;
  std::thread worker_;
};

}  // namespace qtrain::data
