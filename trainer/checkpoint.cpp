// Atomic checkpoint folders, manifest verification and rotation.
#include "trainer/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "common/atomic_file.h"
#include "common/error.h"
#include "common/remove_tree.h"

namespace qtrain::trainer {

namespace fs = std::filesystem;

namespace {

constexpr const char* kLatest = "latest";
constexpr const char* kManifest = "manifest.json";
const std::vector<std::string> kFiles = {"config.json", "model.safetensors", "optimizer.safetensors",
                                         "extras.safetensors", "quant.safetensors", "trainer_state.json"};
// Written by every save, verified when the manifest lists it; older checkpoints lack it.
const std::vector<std::string> kOptionalFiles = {"prune.safetensors"};

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

std::string file_checksum(const std::string& path) {
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
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(digest));
  return text;
}

CheckpointManager::CheckpointManager(std::string output_dir, int64_t keep_last)
    : dir_((fs::path(output_dir) / "checkpoints").string()), keep_last_(keep_last) {}

std::string CheckpointManager::step_name(int64_t step) {
  char name[32];
  std::snprintf(name, sizeof(name), "step_%08lld", static_cast<long long>(step));
  return name;
}

std::string CheckpointManager::save(int64_t step, const CheckpointContents& c) {
  fs::create_directories(dir_);
  const auto final_dir = (fs::path(dir_) / step_name(step)).string();
  const auto tmp_dir = final_dir + ".tmp." + std::to_string(::getpid());
  remove_tree(tmp_dir);
  fs::create_directories(tmp_dir);
  const fs::path tmp(tmp_dir);
  write_file_atomic((tmp / "config.json").string(), c.student_config.to_json().dump(2) + "\n");
  model::save_safetensors((tmp / "model.safetensors").string(), c.model, {{"format", "pt"}});
  model::save_safetensors((tmp / "optimizer.safetensors").string(), c.optimizer);
  model::save_safetensors((tmp / "extras.safetensors").string(), c.extras);
  model::save_safetensors((tmp / "quant.safetensors").string(), c.quant);
  model::save_safetensors((tmp / "prune.safetensors").string(), c.prune);
  write_file_atomic((tmp / "trainer_state.json").string(), c.trainer_state.dump(2) + "\n");
  nlohmann::json manifest = {{"step", step}, {"format", "qtrain-checkpoint-1"}, {"files", nlohmann::json::object()}};
  for (const auto* files : {&kFiles, &kOptionalFiles})
    for (const auto& f : *files) {
      const auto path = (tmp / f).string();
      manifest["files"][f] = {{"bytes", fs::file_size(path)}, {"xxh3_64", file_checksum(path)}};
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
  if (std::rename(tmp_dir.c_str(), final_dir.c_str()) != 0) throw Error("cannot rename checkpoint into place").file(final_dir);
  fsync_directory(dir_);
  if (replacing) remove_tree(aside);
  write_file_atomic((fs::path(dir_) / kLatest).string(), step_name(step) + "\n");
  // Rotation: keep the newest keep_last_ step folders, and never the one just written.
  auto folders = step_folders(dir_);
  for (size_t i = 0; i + keep_last_ < folders.size(); ++i)
    if (folders[i].second != final_dir) remove_tree(folders[i].second);
  // Leftover temporary and set-aside folders of crashed writers.
  for (const auto& entry : fs::directory_iterator(dir_)) {
    const auto name = entry.path().filename().string();
    const bool leftover = name.find(".tmp.") != std::string::npos || name.find(".old.") != std::string::npos;
    if (entry.is_directory() && leftover && entry.path().string() != tmp_dir) remove_tree(entry.path().string());
  }
  return final_dir;
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
      LoadedCheckpoint::open(dir);
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

LoadedCheckpoint LoadedCheckpoint::open(const std::string& dir) {
  if (!fs::is_directory(dir)) throw Error("checkpoint folder not found").file(dir);
  const auto manifest_path = (fs::path(dir) / kManifest).string();
  const auto manifest = read_json(manifest_path);
  if (!manifest.contains("files") || !manifest["files"].is_object())
    throw Error("manifest without files").file(manifest_path).key("files");
  auto files = kFiles;
  for (const auto& f : kOptionalFiles)
    if (manifest["files"].contains(f)) files.push_back(f);
  for (const auto& f : files) {
    const auto path = (fs::path(dir) / f).string();
    if (!manifest["files"].contains(f)) throw Error("manifest does not list " + f).file(manifest_path).key("files." + f);
    const auto& entry = manifest["files"][f];
    if (!fs::exists(path)) throw Error("file listed in the manifest is missing").file(path);
    if (fs::file_size(path) != entry.at("bytes").get<uint64_t>())
      throw Error("size " + std::to_string(fs::file_size(path)) + " differs from the manifest's").file(path).expected(
          std::to_string(entry.at("bytes").get<uint64_t>()) + " bytes");
    const auto sum = file_checksum(path);
    if (sum != entry.at("xxh3_64").get<std::string>())
      throw Error("checksum " + sum + " differs from the manifest's: the file is corrupt").file(path).expected(
          entry.at("xxh3_64").get<std::string>());
  }
  LoadedCheckpoint c;
  c.dir_ = dir;
  c.trainer_state_ = read_json((fs::path(dir) / "trainer_state.json").string());
  return c;
}

void LoadedCheckpoint::restore(const std::string& file, const model::NamedTensors& targets) const {
  const auto path = (fs::path(dir_) / (file + ".safetensors")).string();
  if (targets.empty() && !fs::exists(path)) return;
  auto st = model::SafetensorsFile::open(path);
  torch::NoGradGuard no_grad;
  for (const auto& [name, target] : targets) {
    if (!st->contains(name)) throw Error("tensor missing from checkpoint").file(path).key(name);
    auto source = st->tensor(name);
    if (source.sizes() != target.sizes())
      throw Error("shape " + c10::str(source.sizes()) + " does not match the job's").file(path).key(name).expected(
          c10::str(target.sizes()));
    const_cast<torch::Tensor&>(target).copy_(source);
  }
  if (st->entries().size() != targets.size())
    throw Error("checkpoint holds " + std::to_string(st->entries().size()) + " tensors, the job " +
                std::to_string(targets.size()))
        .file(path)
        .expected("the same model and trainable modules as the job that wrote it");
}

void LoadedCheckpoint::restore_slices(const std::string& file, const std::vector<TensorSlice>& slices,
                                      int64_t tensor_count) const {
  const auto path = (fs::path(dir_) / (file + ".safetensors")).string();
  auto st = model::SafetensorsFile::open(path);
  torch::NoGradGuard no_grad;
  for (const auto& slice : slices) {
    if (!st->contains(slice.name)) throw Error("tensor missing from checkpoint").file(path).key(slice.name);
    auto source = st->tensor(slice.name);
    if (source.sizes() != c10::IntArrayRef(slice.shape))
      throw Error("shape " + c10::str(source.sizes()) + " does not match the job's").file(path).key(slice.name).expected(
          c10::str(c10::IntArrayRef(slice.shape)));
    const_cast<torch::Tensor&>(slice.target).copy_(source.reshape({-1}).narrow(0, slice.begin, slice.target.numel()));
  }
  if (static_cast<int64_t>(st->entries().size()) != tensor_count)
    throw Error("checkpoint holds " + std::to_string(st->entries().size()) + " tensors, the job " +
                std::to_string(tensor_count))
        .file(path)
        .expected("the same model and trainable modules as the job that wrote it");
}

}  // namespace qtrain::trainer
