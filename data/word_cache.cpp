// Per-thread word tables; see word_cache.h for why they are built this way. Keys are hashed
// with XXH3 (header-only xxHash), which is fast on the short strings words are.
#include "data/word_cache.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>

namespace qtrain::data {
namespace {

struct Xxh3Hash {
  size_t operator()(std::string_view s) const { return static_cast<size_t>(XXH3_64bits(s.data(), s.size())); }
};

std::atomic<uint64_t> next_cache_id{1};

}  // namespace

struct WordCache::Table {
  struct Entry {
    uint32_t offset, count;  // a range of ids
  };
  std::deque<std::string> keys;  // owns the words the map's keys point into (deque: never moves them)
  std::unordered_map<std::string_view, Entry, Xxh3Hash> map;
  std::vector<int32_t> ids;
};

WordCache::WordCache(size_t capacity_per_thread)
    : id_(next_cache_id.fetch_add(1, std::memory_order_relaxed)), capacity_(capacity_per_thread) {}

WordCache::Table& WordCache::table() const {
  thread_local std::vector<std::pair<uint64_t, std::unique_ptr<Table>>> tables;
  // The table used last sits at the back, so the common case is one comparison.
  for (size_t i = tables.size(); i-- > 0;) {
    if (tables[i].first != id_) continue;
    if (i + 1 != tables.size()) std::swap(tables[i], tables.back());
    return *tables.back().second;
  }
  if (tables.size() >= kTablesPerThread) tables.erase(tables.begin());
  tables.emplace_back(id_, std::make_unique<Table>());
  return *tables.back().second;
}

bool WordCache::lookup(std::string_view word, std::vector<int32_t>* ids) const {
  if (word.size() > kMaxWordBytes) return false;
  const Table& t = table();
  auto it = t.map.find(word);
  if (it == t.map.end()) return false;
  const int32_t* begin = t.ids.data() + it->second.offset;
  ids->insert(ids->end(), begin, begin + it->second.count);
  return true;
}

void WordCache::insert(std::string_view word, const std::vector<int32_t>& ids, size_t first) const {
  if (word.size() > kMaxWordBytes) return;
  Table& t = table();
  if (t.map.size() >= capacity_) return;
  const std::string& key = t.keys.emplace_back(word);
  const Table::Entry entry{static_cast<uint32_t>(t.ids.size()), static_cast<uint32_t>(ids.size() - first)};
  t.ids.insert(t.ids.end(), ids.begin() + static_cast<std::ptrdiff_t>(first), ids.end());
  t.map.emplace(std::string_view(key), entry);
}

}  // namespace qtrain::data
