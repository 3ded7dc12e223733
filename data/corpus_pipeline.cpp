// The reader -> tokenizer pool -> in-order consumer pipeline of tokenize_corpus(). One mutex
// guards the queue and the window; it is taken once per batch (hundreds of KB of text), not
// per document, so threads do not contend even on short JSONL lines.
#include "data/corpus_pipeline.h"

#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>

#include "common/error.h"

namespace qtrain::data {

namespace {

struct Batch {
  std::vector<RawDocument> raw;
  size_t raw_bytes = 0;
  std::vector<TokenizedDocument> done;
  int64_t disk_bytes_done = 0;  // where reading was when the batch closed
  std::exception_ptr error;     // the batch's first bad document (or a read failure)
  bool ready = false;
};

class Pipeline {
 public:
  Pipeline(const std::vector<CorpusFile>& files, const Tokenizer& tokenizer, const CorpusPipelineOptions& options)
      : files_(files), tokenizer_(tokenizer), options_(options),
        window_(4 * static_cast<size_t>(options.threads) + 2), slots_(window_) {}

  ~Pipeline() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    reader_cv_.notify_all();
    worker_cv_.notify_all();
    for (auto& t : threads_) t.join();
  }

  void run(const DocumentSink& sink) {
    start_threads();
    while (auto batch = next_ready()) {
      if (batch->error) std::rethrow_exception(batch->error);
      for (auto& document : batch->done) sink(document, batch->disk_bytes_done);
    }
  }

 private:
  // std::thread throws std::system_error when the system refuses a thread (EAGAIN: a limit
  // on threads or processes, or no address space left for its stack). That is a --threads
  // this machine cannot give, so bad input rather than a bug; the threads already started
  // are stopped and joined by the destructor, as on any other error.
  void start_threads() {
    const size_t wanted = static_cast<size_t>(options_.threads) + 1;
    threads_.reserve(wanted);  // emplace_back then never reallocates mid-way
    try {
      threads_.emplace_back([this] { read_corpus(); });
      for (int i = 0; i < options_.threads; ++i) threads_.emplace_back([this] { work(); });
    } catch (const std::system_error& e) {
      throw Error("could start only " + std::to_string(threads_.size()) + " of the " + std::to_string(wanted) +
                  " threads needed (" + std::to_string(options_.threads) +
                  " tokenizer threads and a reader): " + e.code().message())
          .key("--threads")
          .expected("fewer threads, within the limits on threads and memory (ulimit -u, ulimit -v)");
    }
  }

  // ---- reader thread ----
  void read_corpus() {
    auto batch = std::make_unique<Batch>();
    int64_t disk_base = 0;
    try {
      for (size_t f = 0; f < files_.size(); ++f) {
        if (options_.format == CorpusFormat::text) {
          // The worker reads (and gunzips) the file, so reading scales with the threads too:
          // with this thread inflating every file, 16 threads were no faster than 8.
          RawDocument document{static_cast<int32_t>(f), 0, 0, {}};
          const auto size = static_cast<size_t>(files_[f].disk_bytes);
          if (!add(batch, std::move(document), size, disk_base + files_[f].disk_bytes)) return;
        } else {
          CorpusInput input(files_[f].path);
          if (!read_lines(input, static_cast<int32_t>(f), disk_base, batch)) return;
        }
        disk_base += files_[f].disk_bytes;
      }
      if (!batch->raw.empty() && !submit(std::move(batch))) return;
    } catch (...) {
      // Documents read before the failure go first, so the error arrives in corpus order.
      if (batch && !batch->raw.empty() && !submit(std::move(batch))) return;
      batch = std::make_unique<Batch>();
      batch->error = std::current_exception();
      if (!submit(std::move(batch))) return;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    reader_done_ = true;
    worker_cv_.notify_all();
    consumer_cv_.notify_all();
  }

  bool read_lines(CorpusInput& input, int32_t file, int64_t disk_base, std::unique_ptr<Batch>& batch) {
    std::string line;
    int64_t line_number = 0, offset = 0;
    while (input.read_line(line)) {
      ++line_number;
      const int64_t line_offset = offset;
      offset += static_cast<int64_t>(line.size()) + 1;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank line: no document
      const int64_t disk_done = disk_base + std::min(input.disk_offset(), files_[file].disk_bytes);
      const size_t size = line.size();
      if (!add(batch, RawDocument{file, line_number, line_offset, std::move(line)}, size, disk_done)) return false;
      line = std::string();
    }
    return true;
  }

  // Adds a document of `size` bytes (on disk for a text file, the line for jsonl) to the open
  // batch; closes and submits the batch once it is full.
  bool add(std::unique_ptr<Batch>& batch, RawDocument document, size_t size, int64_t disk_done) {
    batch->raw_bytes += size;
    batch->raw.push_back(std::move(document));
    batch->disk_bytes_done = disk_done;
    if (batch->raw_bytes < options_.batch_bytes) return true;
    if (!submit(std::move(batch))) return false;
    batch = std::make_unique<Batch>();
    return true;
  }

  // Waits for room in the window, then queues the batch. False when the pipeline is stopping.
  bool submit(std::unique_ptr<Batch> batch) {
    std::unique_lock<std::mutex> lock(mutex_);
    reader_cv_.wait(lock, [&] { return stop_ || produced_ - consumed_ < window_; });
    if (stop_) return false;
    queue_.push_back(batch.get());
    slots_[produced_ % window_] = std::move(batch);
    ++produced_;
    worker_cv_.notify_one();
    return true;
  }

  // ---- tokenizer threads ----
  void work() {
    while (true) {
      Batch* batch = nullptr;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        worker_cv_.wait(lock, [&] { return stop_ || !queue_.empty() || reader_done_; });
        if (stop_ || queue_.empty()) return;
        batch = queue_.front();
        queue_.pop_front();
      }
      tokenize(*batch);
      std::lock_guard<std::mutex> lock(mutex_);
      batch->ready = true;
      consumer_cv_.notify_one();
    }
  }

  void tokenize(Batch& batch) {
    if (batch.error) return;
    batch.done.reserve(batch.raw.size());
    try {
      for (auto& raw : batch.raw) {
        if (options_.format == CorpusFormat::text) raw.bytes = CorpusInput(files_[raw.file].path).read_all();
        TokenizedDocument document;
        document.file = raw.file;
        document.line = raw.line;
        document.text = document_text(raw, options_.format, options_.text_key, files_[raw.file].path);
        document.ids = tokenizer_.encode(document.text);
        batch.done.push_back(std::move(document));
      }
    } catch (...) {
      batch.error = std::current_exception();
    }
    batch.raw.clear();
    batch.raw.shrink_to_fit();
  }

  // ---- the calling thread ----
  // The next batch in corpus order once it is tokenized; null after the last one.
  std::unique_ptr<Batch> next_ready() {
    std::unique_lock<std::mutex> lock(mutex_);
    consumer_cv_.wait(lock, [&] {
      return (consumed_ < produced_ && slots_[consumed_ % window_]->ready) || (reader_done_ && consumed_ == produced_);
    });
    if (consumed_ == produced_) return nullptr;
    auto batch = std::move(slots_[consumed_ % window_]);
    ++consumed_;
    reader_cv_.notify_one();
    return batch;
  }

  const std::vector<CorpusFile>& files_;
  const Tokenizer& tokenizer_;
  const CorpusPipelineOptions options_;
  const size_t window_;  // batches in flight at most: bounds memory

  std::mutex mutex_;
  std::condition_variable reader_cv_, worker_cv_, consumer_cv_;
  std::vector<std::unique_ptr<Batch>> slots_;  // batch k lives in slot k % window_
  std::deque<Batch*> queue_;                   // batches no worker has taken yet
  size_t produced_ = 0, consumed_ = 0;
  bool reader_done_ = false, stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace

void tokenize_corpus(const std::vector<CorpusFile>& files, const Tokenizer& tokenizer,
                     const CorpusPipelineOptions& options, const DocumentSink& sink) {
  QT_REQUIRE(options.threads >= 1, "tokenize_corpus needs at least one thread");
  Pipeline pipeline(files, tokenizer, options);
  pipeline.run(sink);
}

}  // namespace qtrain::data
