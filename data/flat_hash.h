// Open-addressing hash tables (linear probing, power-of-two sizes, kept at most half full)
// for the tokenizer's hot lookups: the word cache, the vocabulary and the merge ranks.
// std::unordered_map chases one heap node per entry; these keep entries in one array, which
// made encoding about twice as fast.
#pragma once
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace qtrain::data {

// XXH3-64 of the bytes, never 0 (0 marks an empty slot).
uint64_t hash_bytes(std::string_view bytes);

// String keys (copied into one arena) -> V.
template <class V>
class FlatStringMap {
 public:
  const V* find(std::string_view key) const {
    if (slots_.empty()) return nullptr;
    const uint64_t hash = hash_bytes(key);
    for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.hash == 0) return nullptr;
      if (s.hash == hash && equal(s, key)) return &s.value;
    }
  }
  // Adds key -> value unless the key is there already (then returns false and keeps the old value).
  bool insert(std::string_view key, const V& value) {
    if (2 * (size_ + 1) > slots_.size()) grow();
    const uint64_t hash = hash_bytes(key);
    size_t i = hash & mask_;
    for (;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.hash == 0) break;
      if (s.hash == hash && equal(s, key)) return false;
    }
    slots_[i] = Slot{hash, static_cast<uint32_t>(arena_.size()), static_cast<uint32_t>(key.size()), value};
    arena_.append(key.data(), key.size());
    ++size_;
    return true;
  }
  size_t size() const { return size_; }

 private:
  struct Slot {
    uint64_t hash = 0;
    uint32_t offset = 0, length = 0;  // the key's bytes in arena_
    V value{};
  };
  bool equal(const Slot& s, std::string_view key) const {
    return s.length == key.size() && std::memcmp(arena_.data() + s.offset, key.data(), key.size()) == 0;
  }
  void grow() {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(old.empty() ? 64 : old.size() * 2, Slot{});
    mask_ = slots_.size() - 1;
    for (const Slot& s : old) {
      if (s.hash == 0) continue;
      size_t i = s.hash & mask_;
      while (slots_[i].hash != 0) i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }
  std::vector<Slot> slots_;
  std::string arena_;
  size_t mask_ = 0, size_ = 0;
};

// 64-bit keys (all but the largest value) -> V.
template <class V>
class FlatU64Map {
 public:
  static constexpr uint64_t kEmpty = std::numeric_limits<uint64_t>::max();

  const V* find(uint64_t key) const {
    if (slots_.empty()) return nullptr;
    for (size_t i = mix(key) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == key) return &slots_[i].value;
      if (slots_[i].key == kEmpty) return nullptr;
    }
  }
  // Sets key -> value, replacing an earlier value.
  void set(uint64_t key, const V& value) {
    if (2 * (size_ + 1) > slots_.size()) grow();
    size_t i = mix(key) & mask_;
    while (slots_[i].key != kEmpty && slots_[i].key != key) i = (i + 1) & mask_;
    if (slots_[i].key == kEmpty) ++size_;
    slots_[i] = Slot{key, value};
  }
  size_t size() const { return size_; }

 private:
  struct Slot {
    uint64_t key = kEmpty;
    V value{};
  };
  // splitmix64's finalizer: every key bit reaches the low bits the index is taken from.
  static uint64_t mix(uint64_t key) {
    key ^= key >> 30;
    key *= 0xBF58476D1CE4E5B9ull;
    key ^= key >> 27;
    key *= 0x94D049BB133111EBull;
    return key ^ (key >> 31);
  }
  void grow() {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(old.empty() ? 64 : old.size() * 2, Slot{});
    mask_ = slots_.size() - 1;
    for (const Slot& s : old) {
      if (s.key == kEmpty) continue;
      size_t i = mix(s.key) & mask_;
      while (slots_[i].key != kEmpty) i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }
  std::vector<Slot> slots_;
  size_t mask_ = 0, size_ = 0;
};

}  // namespace qtrain::data
