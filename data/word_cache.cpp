// Per-thread word tables; see word_cache.h for why they are built this way.
#include "data/word_cache.h"

#include <atomic>
#include <memory>
#include <utility>

#include "data/flat_hash.h"

namespace qtrain::data {
namespace {

std::atomic<uint64_t> next_cache_id{1};

}  // namespace

struct WordCache::Table {
  struct Entry {
    uint32_t offset, count;  // a range of ids
  };
  FlatStringMap<Entry> map;
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
  const Table::Entry* entry = t.map.find(word);
  if (!entry) return false;
  const int32_t* begin = t.ids.data() + entry->offset;
  ids->insert(ids->end(), begin, begin + entry->count);
  return true;
}

void WordCache::insert(std::string_view word, const std::vector<int32_t>& ids, size_t first) const {
  if (word.size() > kMaxWordBytes) return;
  Table& t = table();
  if (t.map.size() >= capacity_) return;
  const Table::Entry entry{static_cast<uint32_t>(t.ids.size()), static_cast<uint32_t>(ids.size() - first)};
  if (t.map.insert(word, entry)) t.ids.insert(t.ids.end(), ids.begin() + static_cast<std::ptrdiff_t>(first), ids.end());
}

}  // namespace qtrain::data
