// Reading, validating and writing Hugging Face checkpoint folders.
#include "model/hf_checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "common/atomic_file.h"
#include "common/error.h"
#include "common/memory.h"
#include "common/strings.h"

namespace qtrain::model {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";


json read_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot open file").file(path.string());
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    throw Error(std::string("malformed JSON: ") + e.what()).file(path.string());
  }
}

}  // namespace

HFCheckpoint HFCheckpoint::open(const std::string& dir) {
  HFCheckpoint ck;
  ck.dir_ = dir;
  const fs::path root(dir);
  if (!fs::is_directory(root)) throw Error("not a checkpoint folder (no such directory)").file(dir);
  ck.config_ = ModelConfig::from_file((root / "config.json").string());
  if (fs::exists(root / kIndexFile)) {
    const auto index_path = (root / kIndexFile).string();
    const json index = read_json(index_path);
    if (!index.contains("weight_map") || !index["weight_map"].is_object())
      throw Error("no weight_map object").file(index_path).key("weight_map");
    std::map<std::string, std::shared_ptr<SafetensorsFile>> shards;
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      if (!it.value().is_string()) throw Error("shard name is not a string").file(index_path).key(it.key());
      const auto shard = it.value().get<std::string>();
      if (!is_plain_file_name(shard))
        throw Error("shard name '" + shard + "' is not a file name in the folder").file(index_path).key(it.key())
            .expected("a file name without a path");
      auto& f = shards[shard];
      if (!f) f = SafetensorsFile::open((root / shard).string());
      if (!f->contains(it.key()))
        throw Error("the index places this tensor in " + shard + ", which lacks it").file(index_path).key(it.key());
      ck.file_of_[it.key()] = f;
    }
  } else if (fs::exists(root / kSingleFile)) {
    auto f = SafetensorsFile::open((root / kSingleFile).string());
    for (const auto& e : f->entries()) ck.file_of_[e.name] = f;
  } else {
    throw Error("no model.safetensors or model.safetensors.index.json (only safetensors checkpoints are read)")
        .file(dir);
  }
  return ck;
}

std::vector<std::string> HFCheckpoint::tensor_names() const {
  std::vector<std::string> names;
  for (const auto& kv : file_of_) names.push_back(kv.first);
  return names;
}

const SafetensorsFile& HFCheckpoint::file_of(const std::string& name) const {
  auto it = file_of_.find(name);
  if (it == file_of_.end()) throw Error("tensor missing from checkpoint").file(dir_).key(name);
  return *it->second;
}

torch::Tensor HFCheckpoint::tensor(const std::string& name) const { return file_of(name).tensor(name); }

bool is_derived_buffer(const std::string& name) { return name.find("rotary_emb.inv_freq") != std::string::npos; }

void check_weights(CausalLMImpl& model, const HFCheckpoint& ck) {
  std::set<std::string> used;
  for (const auto& item : model.named_parameters()) {
    const auto& name = item.key();
    if (!ck.contains(name)) throw Error("tensor missing from checkpoint").file(ck.dir()).key(name);
    const auto& entry = ck.file_of(name).entry(name);
    if (torch::IntArrayRef(entry.shape) != item.value().sizes())
      throw Error("shape " + c10::str(torch::IntArrayRef(entry.shape)) + " does not match the config")
          .file(ck.file_of(name).path()).key(name).expected(c10::str(item.value().sizes()));
    const auto src = ck.tensor(name);  // a view of the mapping: nothing read yet
    if (!src.is_floating_point())
      throw Error(std::string("integer tensor where floating weights are expected: ") + c10::toString(src.scalar_type()))
          .file(ck.file_of(name).path()).key(name);
    used.insert(name);
  }
  for (const auto& name : ck.tensor_names()) {
    if (used.count(name) || is_derived_buffer(name)) continue;
    if (name == "lm_head.weight" && model.config().tie_word_embeddings) continue;  // ignored when tied, as in HF
    throw Error("unexpected tensor: the model config has no place for it").file(ck.file_of(name).path()).key(name);
  }
}

void load_weights(CausalLMImpl& model, const HFCheckpoint& ck) {
  check_weights(model, ck);
  torch::NoGradGuard no_grad;
  for (auto& item : model.named_parameters()) item.value().copy_(ck.tensor(item.key()));
}

CausalLM load_causal_lm(const std::string& dir, const LoadOptions& options) {
  auto ck = HFCheckpoint::open(dir);
  // The model is built in fp32 on the host before it moves: one that cannot fit there at all
  // is refused now, not by the allocator half way through (issue 25: status 1).
  const double needed = static_cast<double>(ck.config().num_parameters()) * 4;
  if (needed > static_cast<double>(host_memory_capacity_bytes()))
    throw Error("the model needs " + std::to_string(static_cast<int64_t>(needed / 1e9)) +
                " GB of host memory to load; this machine has " +
                std::to_string(host_memory_capacity_bytes() / 1000000000) + " GB with swap")
        .file((std::filesystem::path(dir) / "config.json").string())
        .expected("a model that fits in host memory");
  CausalLM model(ck.config());
  model->to(options.device, options.dtype);
  load_weights(*model, ck);
  model->eval();
  return model;
}

NamedTensors hf_state(CausalLMImpl& model) {
  NamedTensors out;
  for (auto& item : model.named_parameters()) out.emplace_back(item.key(), item.value().detach());
  return out;
}

std::string dtype_name(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return "float32";
    case torch::kBFloat16: return "bfloat16";
    case torch::kFloat16: return "float16";
    case torch::kFloat64: return "float64";
    default: return c10::toString(t);
  }
}

torch::ScalarType parse_dtype(const std::string& s) {
  if (s == "fp32" || s == "float32") return torch::kFloat32;
  if (s == "bf16" || s == "bfloat16") return torch::kBFloat16;
  if (s == "fp16" || s == "float16") return torch::kFloat16;
  throw Error("unknown dtype '" + s + "'").expected("fp32|bf16|fp16");
}

namespace {
std::string partial_shard(const fs::path& dir, size_t index) {
  return (dir / ("model-" + std::to_string(index + 1) + ".partial.safetensors")).string();
}

bool is_partial_shard(const std::string& file) {
  return file.rfind("model-", 0) == 0 && file.find(".partial.safetensors") != std::string::npos;
}

// Partial shards of a writer that crashed or failed: no reader may count them as weights.
void remove_partial_shards(const std::string& dir) {
  std::error_code ec;
  std::vector<fs::path> partial;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (is_partial_shard(entry.path().filename().string())) partial.push_back(entry.path());
  for (const auto& path : partial) fs::remove(path, ec);
}
}  // namespace

WeightShardWriter::WeightShardWriter(std::string dir, int64_t max_shard_bytes)
    : dir_(std::move(dir)), max_bytes_(max_shard_bytes) {
  fs::create_directories(dir_);
  remove_partial_shards(dir_);
}

WeightShardWriter::~WeightShardWriter() {
  if (!finished_) remove_partial_shards(dir_);
}

void WeightShardWriter::add(const std::string& name, torch::Tensor tensor, const std::string& raw_dtype) {
  const auto bytes = stored_bytes(tensor);
  if (in_shard_ > 0 && in_shard_ + bytes > max_bytes_) flush();
  if (!raw_dtype.empty()) raw_dtypes_[name] = raw_dtype;
  // A copy: the caller may free or change the tensor (a sharded unit released) before the
  // shard is written.
  pending_.emplace_back(name, tensor.detach().to(torch::kCPU, tensor.scalar_type(), false, /*copy=*/true).contiguous());
  in_shard_ += bytes;
  total_ += bytes;
}

void WeightShardWriter::flush() {
  std::vector<std::string> names;
  std::map<std::string, std::string> raw;
  for (const auto& [name, t] : pending_) {
    names.push_back(name);
    if (const auto it = raw_dtypes_.find(name); it != raw_dtypes_.end()) raw.insert(*it);
  }
  save_safetensors(partial_shard(dir_, shards_.size()), pending_, {{"format", "pt"}}, raw);
  shards_.push_back(std::move(names));
  pending_.clear();
  in_shard_ = 0;
}

int64_t WeightShardWriter::finish() {
  if (!pending_.empty() || shards_.empty()) flush();
  const fs::path dir(dir_);
  std::set<std::string> used;
  std::vector<std::string> names;
  char name[64];
  for (size_t i = 0; i < shards_.size(); ++i) {
    std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", i + 1, shards_.size());
    names.push_back(shards_.size() == 1 ? kSingleFile : name);
    used.insert(names.back());
  }
  if (shards_.size() > 1) used.insert(kIndexFile);
  // An earlier export's weight files that this layout does not overwrite would mislead a reader.
  for (const auto& entry : fs::directory_iterator(dir)) {
    const auto file = entry.path().filename().string();
    const bool weights = file == kIndexFile || file == kSingleFile ||
                         (file.rfind("model-", 0) == 0 && file.find("-of-") != std::string::npos &&
                          file.find(".partial.") == std::string::npos);
    if (weights && !used.count(file)) fs::remove(entry.path());
  }
  for (size_t i = 0; i < shards_.size(); ++i) fs::rename(partial_shard(dir, i), dir / names[i]);
  if (shards_.size() > 1) {
    json index = {{"metadata", {{"total_size", total_}}}, {"weight_map", json::object()}};
    for (size_t i = 0; i < shards_.size(); ++i)
      for (const auto& tensor : shards_[i]) index["weight_map"][tensor] = names[i];
    write_file_atomic((dir / kIndexFile).string(), index.dump(2) + "\n");
  }
  fsync_directory(dir_);
  finished_ = true;
  return total_;
}

void save_hf_checkpoint(const std::string& dir, const ModelConfig& config, const NamedTensors& tensors,
                        const SaveOptions& options) {
  // Shards in name order, as before the writer streamed.
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return tensors[a].first < tensors[b].first; });
  WeightShardWriter writer(dir, options.max_shard_bytes);
  for (const auto i : order) {
    const auto& [name, t] = tensors[i];
    writer.add(name, (options.dtype && t.is_floating_point()) ? t.to(*options.dtype) : t);
  }
  writer.finish();
  ModelConfig out_config = config;
  if (options.dtype) out_config.dtype = dtype_name(*options.dtype);
  write_file_atomic((fs::path(dir) / "config.json").string(), out_config.to_json().dump(2) + "\n");
}

void save_causal_lm(CausalLMImpl& model, const std::string& dir, const SaveOptions& options) {
  auto state = hf_state(model);  // handles only: read while their unit is whole
  std::sort(state.begin(), state.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::optional<WeightShardWriter> writer;
  if (options.write) writer.emplace(dir, options.max_shard_bytes);
  for (int unit = -1; unit < model.config().num_hidden_layers; ++unit) {
    const HeldUnit held(options.gather, unit);
    if (!writer) continue;
    for (const auto& [name, t] : state)
      if (decoder_layer_of(name) == unit) writer->add(name, (options.dtype && t.is_floating_point()) ? t.to(*options.dtype) : t);
  }
  if (!writer) return;
  writer->finish();
  ModelConfig config = model.config();
  if (options.dtype) config.dtype = dtype_name(*options.dtype);
  write_file_atomic((fs::path(dir) / "config.json").string(), config.to_json().dump(2) + "\n");
}

}  // namespace qtrain::model
