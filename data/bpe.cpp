// BPE merging, a transcription of tokenizers' Word::merge_all and BPE::merge_word.
#include "data/bpe.h"

#include <algorithm>

#include "common/error.h"
#include "data/byte_level.h"

namespace qtrain::data {

BpeModel::BpeModel(const BpeSpec& spec, const std::string& file)
    : fuse_unk_(spec.fuse_unk), ignore_merges_(spec.ignore_merges) {
  int32_t max_id = -1;
  for (const auto& [token, id] : spec.vocab) {
    if (id < 0) throw Error("negative token id " + std::to_string(id)).file(file).key("model.vocab." + token);
    vocab_.insert(token, id);
    max_id = std::max(max_id, id);
  }
  id_to_token_.resize(static_cast<size_t>(max_id + 1));
  has_token_.assign(id_to_token_.size(), false);
  for (const auto& [token, id] : spec.vocab) {
    id_to_token_[id] = token;
    has_token_[id] = true;
  }
  for (int b = 0; b < 256; ++b) {
    const int32_t* id = vocab_.find(byte_level::encode(std::string(1, static_cast<char>(b))));
    byte_ids_[b] = id ? *id : -1;
  }
  if (spec.unk_token) {
    const int32_t* id = vocab_.find(*spec.unk_token);
    if (!id)
      throw Error("unk_token '" + *spec.unk_token + "' is not in the vocabulary").file(file).key("model.unk_token");
    unk_id_ = *id;
  }
  for (size_t rank = 0; rank < spec.merges.size(); ++rank) {
    const auto& [left, right] = spec.merges[rank];
    const std::string key = "model.merges[" + std::to_string(rank) + "]";
    const int32_t *l = vocab_.find(left), *r = vocab_.find(right), *m = vocab_.find(left + right);
    if (!l) throw Error("merge token '" + left + "' is not in the vocabulary").file(file).key(key);
    if (!r) throw Error("merge token '" + right + "' is not in the vocabulary").file(file).key(key);
    if (!m) throw Error("merged token '" + left + right + "' is not in the vocabulary").file(file).key(key);
    // Later duplicates win, as in tokenizers' HashMap built from the merge list.
    merges_.set(pair_key(*l, *r), Merge{static_cast<int32_t>(rank), *m});
  }
}

std::optional<int32_t> BpeModel::token_to_id(std::string_view token) const {
  const int32_t* id = vocab_.find(token);
  if (!id) return std::nullopt;
  return *id;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
  if (id < 0 || id >= static_cast<int32_t>(id_to_token_.size()) || !has_token_[id]) return nullptr;
  return &id_to_token_[id];
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>* ids) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (const int32_t* id = vocab_.find(byte_level::encode(word))) {
      ids->push_back(*id);
      return;
    }
  }
  // One symbol per byte; bytes missing from the vocabulary become unk (fused if asked) or,
  // without an unk token, are dropped, as merge_word does.
  thread_local std::vector<int32_t> symbols;
  symbols.clear();
  bool previous_unk = false;
  for (char c : word) {
    const int32_t id = byte_ids_[static_cast<uint8_t>(c)];
    if (id >= 0) {
      symbols.push_back(id);
      previous_unk = false;
    } else if (unk_id_) {
      if (!(previous_unk && fuse_unk_)) symbols.push_back(*unk_id_);
      previous_unk = true;
    }
  }
  merge_all(&symbols);
  ids->insert(ids->end(), symbols.begin(), symbols.end());
}

void BpeModel::merge_all(std::vector<int32_t>* symbol_ids) const {
  const auto n = static_cast<int32_t>(symbol_ids->size());
  if (n < 2) return;
  struct Symbol {
    int32_t id, prev, next;
    bool removed;
  };
  struct Candidate {
    int32_t rank, pos, new_id;
  };
  // Min-heap on (rank, pos): the lowest rank first, and the leftmost among equal ranks.
  const auto later = [](const Candidate& a, const Candidate& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  };
  thread_local std::vector<Symbol> symbols;
  thread_local std::vector<Candidate> heap;
  symbols.clear();
  heap.clear();
  for (int32_t i = 0; i < n; ++i) symbols.push_back({(*symbol_ids)[i], i - 1, i + 1 < n ? i + 1 : -1, false});
  const auto push_candidate = [&](int32_t pos) {
    const Merge* merge = merges_.find(pair_key(symbols[pos].id, symbols[symbols[pos].next].id));
    if (!merge) return;
    heap.push_back({merge->rank, pos, merge->new_id});
    std::push_heap(heap.begin(), heap.end(), later);
  };
  for (int32_t i = 0; i + 1 < n; ++i) push_candidate(i);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const Candidate top = heap.back();
    heap.pop_back();
    Symbol& left = symbols[top.pos];
    if (left.removed || left.next < 0) continue;
    // Skip a stale entry: the pair at this position has changed since it was pushed.
    const Symbol& right = symbols[left.next];
    const Merge* merge = merges_.find(pair_key(left.id, right.id));
    if (!merge || merge->new_id != top.new_id) continue;
    const int32_t right_pos = left.next;
    left.id = top.new_id;
    left.next = right.next;
    symbols[right_pos].removed = true;
    if (left.next >= 0) symbols[left.next].prev = top.pos;
    if (left.prev >= 0) push_candidate(left.prev);
    if (left.next >= 0) push_candidate(top.pos);
  }
  symbol_ids->clear();
  for (int32_t i = 0; i >= 0; i = symbols[i].next) symbol_ids->push_back(symbols[i].id);
}

}  // namespace qtrain::data
