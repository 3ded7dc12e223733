// Word -> ids memo for one tokenizer. Text repeats its words, so after warm-up most words
// skip BPE. Each thread keeps its own table (no locks, no shared cache lines: encoding scales
// with threads); a thread holds tables for at most kTablesPerThread caches, dropping the
// oldest. Like tokenizers' BPE cache, a table stops growing when full rather than evicting:
// a corpus's frequent words come early.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace qtrain::data {

class WordCache {
 public:
  // Words longer than this are not cached (tokenizers' MAX_LENGTH is 256 too).
  static constexpr size_t kMaxWordBytes = 256;
  static constexpr size_t kTablesPerThread = 8;

  explicit WordCache(size_t capacity_per_thread);

  // Appends the cached ids of `word` and returns true, or returns false.
  bool lookup(std::string_view word, std::vector<int32_t>* ids) const;
  // Records the ids of `word` (ids[first..]) unless the table is full or the word too long.
  void insert(std::string_view word, const std::vector<int32_t>& ids, size_t first) const;

 private:
  struct Table;
  Table& table() const;

  uint64_t id_;  // unique in the process, never reused: names this cache's table in each thread
  size_t capacity_;
};

}  // namespace qtrain::data
