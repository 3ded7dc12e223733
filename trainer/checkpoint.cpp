// Atomic checkpoint folders, manifest verification and rotation.
#include "trainer/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "common/atomic_file.h"
#include "common/dist.h"
#include "common/error.h"
#include "common/strings.h"
#include "common/remove_tree.h"

namespace qtrain::trainer {

namespace fs = std::filesystem;

namespace {

constexpr const char* kLatest = "latest";
constexpr const char* kManifest = "manifest.json";
constexpr const char* kFormat = "qtrain-checkpoint-2";
constexpr const char* kPiecesKey = "qtrain.pieces";  // a shard's metadata: its pieces
// The first layout: one file of whole tensors per section (prune.safetensors optional).
constexpr const char* kFormatV1 = "qtrain-checkpoint-1";
const std::vector<std::string> kFilesV1 = {"config.json", "model.safetensors", "optimizer.safetensors",
                                           "extras.safetensors", "quant.safetensors", "trainer_state.json"};

std::string shard_name(int rank, int world) {
  char name[64];
  std::snprintf(name, sizeof(name), "shard-%05d-of-%05d.safetensors", rank, world);
  return name;
}

// Every rank's outcome of one phase of a save: throws on every rank when any failed (the
// failed one with its own error), so that no rank waits in a collective for a dead one.
void agree(const std::exception_ptr& failure, const std::string& what) {
  const int failed = dist::allreduce_max(failure ? dist::rank() + 1 : 0);
  if (failure) std::rethrow_exception(failure);
  if (failed) throw Error("rank " + std::to_string(failed - 1) + " failed " + what + " (its error is in its log)");
}

template <class F>
std::exception_ptr attempt(F&& f) {
  try {
    f();
  } catch (...) {
    return std::current_exception();
  }
  return nullptr;
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot open").file(path);
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("malformed JSON: ") + e.what()).file(path);
  }
}

// Step folders "step_00000010" present in `dir`, sorted by step.
std::vector<std::pair<int64_t, std::string>> step_folders(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const auto name = entry.path().filename().string();
    if (!entry.is_directory() || name.rfind("step_", 0) != 0 || name.find('.') != std::string::npos) continue;
    try {
      out.emplace_back(std::stoll(name.substr(5)), entry.path().string());
    } catch (const std::exception&) {
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

std::string hex_digest(uint64_t digest) {
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(digest));
  return text;
}

uint64_t file_digest(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error("cannot open for checksum").file(path);
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  std::vector<char> buffer(1 << 20);
  ssize_t n;
  while ((n = ::read(fd, buffer.data(), buffer.size())) > 0) XXH3_64bits_update(state, buffer.data(), static_cast<size_t>(n));
  ::close(fd);
  const auto digest = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  if (n < 0) throw Error("read failed during checksum").file(path);
  return digest;
}

std::string file_checksum(const std::string& path) { return hex_digest(file_digest(path)); }

CheckpointManager::CheckpointManager(std::string output_dir, int64_t keep_last)
    : dir_((fs::path(output_dir) / "checkpoints").string()), keep_last_(keep_last) {}

std::string CheckpointManager::step_name(int64_t step) {
  char name[32];
  std::snprintf(name, sizeof(name), "step_%08lld", static_cast<long long>(step));
  return name;
}

TensorSlices whole(const model::NamedTensors& tensors) {
  TensorSlices out;
  for (const auto& [name, t] : tensors) out.push_back({name, t.sizes().vec(), 0, t});
  return out;
}

std::string CheckpointManager::save(int64_t step, const CheckpointContents& c) {
  const int rank = dist::rank(), world = dist::world_size();
  const bool main = rank == 0;
  const auto final_dir = (fs::path(dir_) / step_name(step)).string();
  // Rank 0's process id names the temporary folder that every rank writes into.
  const auto tmp_dir = final_dir + ".tmp." + std::to_string(dist::allreduce_max(main ? ::getpid() : 0));
  const fs::path tmp(tmp_dir);
  agree(attempt([&] {
          if (!main) return;
          fs::create_directories(dir_);
          remove_tree(tmp_dir);
          fs::create_directories(tmp_dir);
        }),
        "to create " + tmp_dir);
  // Phase 1, every rank: its shard, fsynced; then its size and checksum to rank 0.
  std::vector<long long> sizes(world, 0), sums(world, 0);
  const auto shard = shard_name(rank, world);
  agree(attempt([&] {
          model::NamedTensors tensors;
          nlohmann::json pieces = nlohmann::json::object();
          for (const auto& section : checkpoint_sections()) {
            const auto found = c.sections.find(section);
            if (found == c.sections.end()) continue;
            for (const auto& slice : found->second) {
              const auto key = section + "/" + slice.name + "@" + std::to_string(slice.begin);
              tensors.emplace_back(key, slice.target.reshape({-1}));
              pieces[key] = {{"section", section}, {"name", slice.name}, {"shape", slice.shape}, {"begin", slice.begin}};
            }
          }
          const auto path = (tmp / shard).string();
          model::save_safetensors(path, tensors, {{"format", "pt"}, {kPiecesKey, pieces.dump()}});
          sizes[rank] = static_cast<long long>(fs::file_size(path));
          const uint64_t sum = file_digest(path);
          std::memcpy(&sums[rank], &sum, sizeof(sum));
        }),
        "to write its checkpoint shard in " + tmp_dir);
  dist::allreduce_sum(sizes.data(), world);
  dist::allreduce_sum(sums.data(), world);
  // Phase 2, rank 0: the replicated files and the manifest, then the folder into place.
  agree(attempt([&] {
          if (!main) return;
          write_file_atomic((tmp / "config.json").string(), c.student_config.to_json().dump(2) + "\n");
          write_file_atomic((tmp / "trainer_state.json").string(), c.trainer_state.dump(2) + "\n");
          nlohmann::json manifest = {{"step", step}, {"format", kFormat}, {"world_size", world},
                                     {"shards", nlohmann::json::array()}, {"files", nlohmann::json::object()}};
          for (const auto* f : {"config.json", "trainer_state.json"}) {
            const auto path = (tmp / f).string();
            manifest["files"][f] = {{"bytes", fs::file_size(path)}, {"xxh3_64", file_checksum(path)}};
          }
          for (int r = 0; r < world; ++r) {
            uint64_t sum;
            std::memcpy(&sum, &sums[r], sizeof(sum));
            manifest["shards"].push_back(shard_name(r, world));
            manifest["files"][shard_name(r, world)] = {{"bytes", sizes[r]}, {"xxh3_64", hex_digest(sum)}};
          }
          write_file_atomic((tmp / kManifest).string(), manifest.dump(2) + "\n");
          fsync_directory(tmp_dir);
          // A checkpoint of the same step from an earlier, interrupted life is moved aside, not
          // removed, until the new one is in place; a crash in between leaves the older steps for
          // latest()'s fallback (the set-aside folder is not a step folder: the next save removes it).
          const auto aside = final_dir + ".old." + std::to_string(::getpid());
          const bool replacing = fs::exists(final_dir);
          if (replacing && std::rename(final_dir.c_str(), aside.c_str()) != 0)
            throw Error("cannot move the previous checkpoint of this step aside").file(final_dir);
          if (std::rename(tmp_dir.c_str(), final_dir.c_str()) != 0)
            throw Error("cannot rename checkpoint into place").file(final_dir);
          fsync_directory(dir_);
          if (replacing) remove_tree(aside);
          write_file_atomic((fs::path(dir_) / kLatest).string(), step_name(step) + "\n");
          // Rotation: of the steps up to this one, keep the newest keep_last_ (this one among
          // them). Later steps stay: they exist when this run resumed from an earlier
          // checkpoint (the later ones did not verify, or resume named an earlier one), and
          // nothing has superseded them; a save of the same step later replaces each.
          std::vector<std::string> superseded;
          for (const auto& [folder_step, folder] : step_folders(dir_))
            if (folder_step <= step) superseded.push_back(folder);
          for (size_t i = 0; i + keep_last_ < superseded.size(); ++i)
            if (superseded[i] != final_dir) remove_tree(superseded[i]);
          // Leftover temporary and set-aside folders of crashed writers.
          for (const auto& entry : fs::directory_iterator(dir_)) {
            const auto name = entry.path().filename().string();
            const bool leftover = name.find(".tmp.") != std::string::npos || name.find(".old.") != std::string::npos;
            if (entry.is_directory() && leftover) remove_tree(entry.path().string());
          }
        }),
        "to complete checkpoint " + final_dir);
  return final_dir;
}

bool CheckpointManager::any() const {
  return fs::exists(fs::path(dir_) / kLatest) || !step_folders(dir_).empty();
}

std::optional<std::string> CheckpointManager::latest() const {
  const auto pointer = fs::path(dir_) / kLatest;
  std::string named;
  if (fs::exists(pointer)) {
    std::ifstream in(pointer);
    std::getline(in, named);
  }
  const auto folders = step_folders(dir_);
  if (named.empty() && folders.empty()) return std::nullopt;
  // The pointer's checkpoint if it verifies, else the newest one that does: a crash between
  // the folder's rename and the pointer's update, or a folder damaged since, loses at most
  // the checkpoints after the newest valid one.
  std::vector<std::string> candidates;
  if (!named.empty()) candidates.push_back((fs::path(dir_) / named).string());
  for (auto it = folders.rbegin(); it != folders.rend(); ++it)
    if (std::find(candidates.begin(), candidates.end(), it->second) == candidates.end()) candidates.push_back(it->second);
  std::string problems;
  for (const auto& dir : candidates) {
    try {
      LoadedCheckpoint::open(dir, LoadedCheckpoint::Verify::everything);
    } catch (const std::exception& e) {
      problems += std::string(problems.empty() ? "" : "; ") + e.what();
      continue;
    }
    if (!problems.empty())
      std::fprintf(stderr, "qtrain: warning: skipping checkpoints that do not verify (%s); using %s\n",
                   problems.c_str(), dir.c_str());
    return dir;
  }
  throw Error("no checkpoint in this folder verifies (" + problems + ")")
      .file(dir_)
      .key("checkpoint.resume")
      .expected("a folder with a valid checkpoint, or a new run.output_dir");
}

LoadedCheckpoint LoadedCheckpoint::open(const std::string& dir, Verify verify) {
  if (!fs::is_directory(dir)) throw Error("checkpoint folder not found").file(dir);
  const auto manifest_path = (fs::path(dir) / kManifest).string();
  const auto manifest = read_json(manifest_path);
  if (!manifest.contains("files") || !manifest["files"].is_object())
    throw Error("manifest without files").file(manifest_path).key("files");
  const auto format = manifest.value("format", std::string(kFormatV1));
  if (format != kFormat && format != kFormatV1)
    throw Error("unknown checkpoint format '" + format + "'").file(manifest_path).key("format").expected(
        std::string(kFormat) + " or " + kFormatV1);
  const bool v1 = format == kFormatV1;
  std::vector<std::string> files;
  if (v1) {
    files = kFilesV1;
    if (manifest["files"].contains("prune.safetensors")) files.push_back("prune.safetensors");
  } else {
    files = {"config.json", "trainer_state.json"};
    if (!manifest.contains("shards") || !manifest["shards"].is_array() || manifest["shards"].empty())
      throw Error("manifest without shards").file(manifest_path).key("shards");
    for (const auto& shard : manifest["shards"]) {
      if (!shard.is_string() || !is_plain_file_name(shard.get<std::string>()))
        throw Error("a shard is not a file name in the checkpoint folder: " + shard.dump())
            .file(manifest_path)
            .key("shards")
            .expected("file names without a path");
      files.push_back(shard.get<std::string>());
    }
  }
  LoadedCheckpoint c;
  c.dir_ = dir;
  for (const auto& f : files) {
    const auto path = (fs::path(dir) / f).string();
    if (!manifest["files"].contains(f)) throw Error("manifest does not list " + f).file(manifest_path).key("files." + f);
    const auto& entry = manifest["files"][f];
    if (!fs::exists(path)) throw Error("file listed in the manifest is missing").file(path);
    if (fs::file_size(path) != entry.at("bytes").get<uint64_t>())
      throw Error("size " + std::to_string(fs::file_size(path)) + " differs from the manifest's").file(path).expected(
          std::to_string(entry.at("bytes").get<uint64_t>()) + " bytes");
    const auto expected = entry.at("xxh3_64").get<std::string>();
    const bool tensors = f.size() > 12 && f.compare(f.size() - 12, 12, ".safetensors") == 0;
    if (verify == Verify::everything || !tensors) {
      const auto sum = file_checksum(path);
      if (sum != expected)
        throw Error("checksum " + sum + " differs from the manifest's: the file is corrupt").file(path).expected(expected);
    }
    if (!tensors) continue;
    File file{path, verify == Verify::everything ? "" : expected, model::SafetensorsFile::open(path)};
    file.verified = verify == Verify::everything;
    const size_t index = c.files_.size();
    if (v1) {  // whole tensors, one file per section
      const auto section = f.substr(0, f.size() - 12);
      auto& named = c.pieces_[section];
      for (const auto& e : file.st->entries()) {
        int64_t numel = 1;
        for (auto d : e.shape) numel *= d;
        named[e.name].push_back({index, e.name, e.shape, 0, numel});
      }
    } else {
      const auto& metadata = file.st->metadata();
      const auto found = metadata.find(kPiecesKey);
      if (found == metadata.end()) throw Error("shard without its pieces' metadata").file(path).key(kPiecesKey);
      nlohmann::json pieces;
      try {
        pieces = nlohmann::json::parse(found->second);
        for (const auto& [key, p] : pieces.items()) {
          if (!file.st->contains(key)) throw Error("piece listed in the metadata is missing").file(path).key(key);
          c.pieces_[p.at("section").get<std::string>()][p.at("name").get<std::string>()].push_back(
              {index, key, p.at("shape").get<std::vector<int64_t>>(), p.at("begin").get<int64_t>(),
               file.st->entry(key).shape.empty() ? 1 : file.st->entry(key).shape.at(0)});
        }
      } catch (const nlohmann::json::exception& e) {
        throw Error(std::string("malformed pieces metadata: ") + e.what()).file(path).key(kPiecesKey);
      }
    }
    c.files_.push_back(std::move(file));
  }
  c.trainer_state_ = read_json((fs::path(dir) / "trainer_state.json").string());
  return c;
}

const model::SafetensorsFile& LoadedCheckpoint::read(size_t index) const {
  const auto& file = files_.at(index);
  if (!file.verified) {
    const auto sum = file_checksum(file.path);
    if (sum != file.checksum)
      throw Error("checksum " + sum + " differs from the manifest's: the file is corrupt").file(file.path).expected(
          file.checksum);
    file.verified = true;
  }
  return *file.st;
}

void LoadedCheckpoint::restore(const std::string& section, const model::NamedTensors& targets) const {
  if (targets.empty() && !pieces_.count(section)) return;
  restore_slices(section, whole(targets), static_cast<int64_t>(targets.size()));
}

void LoadedCheckpoint::restore_slices(const std::string& section, const TensorSlices& slices,
                                      int64_t tensor_count) const {
  const auto where = (fs::path(dir_) / section).string();  // names the section in errors
  static const std::map<std::string, std::vector<Piece>> none;
  const auto found = pieces_.find(section);
  const auto& named = found == pieces_.end() ? none : found->second;
  torch::NoGradGuard no_grad;
  for (const auto& slice : slices) {
    const auto it = named.find(slice.name);
    if (it == named.end()) throw Error("tensor missing from checkpoint").file(where).key(slice.name);
    const auto target = slice.target.reshape({-1});
    const int64_t begin = slice.begin, end = begin + target.numel();
    int64_t covered = 0;
    for (const auto& piece : it->second) {
      if (piece.shape != slice.shape)
        throw Error("shape " + c10::str(c10::IntArrayRef(piece.shape)) + " does not match the job's")
            .file(where)
            .key(slice.name)
            .expected(c10::str(c10::IntArrayRef(slice.shape)));
      const int64_t lo = std::max(begin, piece.begin), hi = std::min(end, piece.begin + piece.length);
      if (lo >= hi) continue;
      const auto source = read(piece.file).tensor(piece.key).reshape({-1});
      target.narrow(0, lo - begin, hi - lo).copy_(source.narrow(0, lo - piece.begin, hi - lo));
      covered += hi - lo;
    }
    if (covered != end - begin)
      throw Error("the shards hold " + std::to_string(covered) + " of elements [" + std::to_string(begin) + ", " +
                  std::to_string(end) + ")")
          .file(where)
          .key(slice.name)
          .expected("every element, once");
    // A target that is a copy (reshape of a non-contiguous tensor) takes the values back.
    if (target.data_ptr() != slice.target.data_ptr()) const_cast<torch::Tensor&>(slice.target).copy_(target.view_as(slice.target));
  }
  if (static_cast<int64_t>(named.size()) != tensor_count)
    throw Error("checkpoint holds " + std::to_string(named.size()) + " tensors, the job " + std::to_string(tensor_count))
        .file(where)
        .expected("the same model and trainable modules as the job that wrote it");
}

model::NamedTensors LoadedCheckpoint::tensors(const std::string& section) const {
  model::NamedTensors out;
  const auto found = pieces_.find(section);
  if (found == pieces_.end()) return out;
  for (const auto& [name, pieces] : found->second) {
    const auto& piece = pieces.front();
    out.emplace_back(name, torch::empty(piece.shape, read(piece.file).tensor(piece.key).options()));
  }
  restore(section, out);
  return out;
}

}  // namespace qtrain::trainer
