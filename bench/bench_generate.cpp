// Generation latency and memory of an exported integer checkpoint against its bf16 model:
// for each, prefill latency (prompt forward + first token), per-token decode latency and
// tokens/s (KV cache, greedy, batch 1), peak CUDA memory during generation (the weights
// included) and the bytes of the model's tensors. One JSON line per model, then one with the
// ratios (integer / bf16). Medians over --iters runs after --warmup untimed ones.
//   bench_generate --reference BF16_DIR --quantized EXPORTED_DIR [--prompt-len 512] [--new-tokens 128]
#include <boost/program_options.hpp>
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "bench/bench_options.h"
#include "common/cli_main.h"
#include "common/device.h"
#include "common/error.h"
#include "common/memory.h"
#include "eval/generate.h"
#include "quant/load_compressed.h"

namespace po = boost::program_options;

namespace {

struct Settings {
  std::string reference, quantized, device_name = "auto", dtype_name = "bf16";
  int64_t prompt_len = 512, new_tokens = 128, warmup = 2, iters = 5;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Bytes of the model's parameters and buffers (packed integers, scales, bf16 tensors).
int64_t model_bytes(qtrain::model::CausalLMImpl& model) {
  int64_t bytes = 0;
  for (const auto& p : model.parameters()) bytes += static_cast<int64_t>(p.numel() * p.element_size());
  for (const auto& b : model.buffers()) bytes += static_cast<int64_t>(b.numel() * b.element_size());
  return bytes;
}

int64_t safetensors_bytes(const std::string& dir) {
  int64_t bytes = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    if (entry.path().extension() == ".safetensors") bytes += static_cast<int64_t>(entry.file_size());
  return bytes;
}

nlohmann::json measure(const std::string& label, const std::string& dir, const Settings& s) {
  const auto device = qtrain::resolve_device(s.device_name);
  const auto dtype = qtrain::resolve_dtype(s.dtype_name, device);
  auto model = qtrain::quant::load_for_eval(dir, {device, dtype});
  model->eval();
  torch::manual_seed(1234);
  const auto ids = torch::randint(0, model->config().vocab_size, {s.prompt_len}, torch::kInt64);
  const std::vector<int64_t> prompt(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + s.prompt_len);
  qtrain::eval::GenerateOptions o;
  o.max_new_tokens = s.new_tokens;  // greedy, no EOS: always the full count
  o.synchronize = [device] {
    if (device.is_cuda()) torch::cuda::synchronize(device.index());
  };
  for (int64_t i = 0; i < s.warmup; ++i) qtrain::eval::generate(*model, prompt, o);
  qtrain::reset_peak_memory(device);
  std::vector<double> prefill, per_token;
  for (int64_t i = 0; i < s.iters; ++i) {
    const auto r = qtrain::eval::generate(*model, prompt, o);
    prefill.push_back(r.prefill_seconds);
    per_token.push_back(r.decode_seconds / static_cast<double>(std::max<int64_t>(1, r.decode_steps)));
  }
  const double decode = median(per_token);
  return {{"bench", "generate"},
          {"model", label},
          {"dir", dir},
          {"device", qtrain::describe(device, dtype)},
          {"prompt_len", s.prompt_len},
          {"new_tokens", s.new_tokens},
          {"prefill_seconds", median(prefill)},
          {"decode_seconds_per_token", decode},
          {"decode_tokens_per_second", decode > 0 ? 1.0 / decode : 0.0},
          {"peak_memory_bytes", qtrain::peak_memory_bytes(device)},
          {"peak_memory_kind", device.is_cuda() ? "cuda_allocated" : "host_rss_high_water"},
          {"model_bytes", model_bytes(*model)},
          {"checkpoint_bytes", safetensors_bytes(dir)}};
}

int run(int argc, char** argv) {
  Settings s;
  po::options_description desc("bench_generate: KV-cache generation latency and memory, integer export vs bf16\nOptions");
  desc.add_options()("help,h", "show this help")
      ("reference", po::value(&s.reference)->required(), "the bf16 (or any plain) Hugging Face folder")
      ("quantized", po::value(&s.quantized)->required(), "the exported compressed-tensors folder")
      ("prompt-len", po::value(&s.prompt_len)->default_value(512), "prompt tokens (random ids)")
      ("new-tokens", po::value(&s.new_tokens)->default_value(128), "generated tokens per run")
      ("warmup", po::value(&s.warmup)->default_value(2), "untimed runs first")
      ("iters", po::value(&s.iters)->default_value(5), "timed runs (medians are reported)")
      ("device", po::value(&s.device_name)->default_value("auto"), "auto|cpu|cuda")
      ("dtype", po::value(&s.dtype_name)->default_value("bf16"), "compute dtype of the unquantized parts");
  if (!qtrain::bench::parse_options(desc, argc, argv)) return 0;
  if (s.prompt_len < 1 || s.new_tokens < 2 || s.iters < 1) throw qtrain::Error("need prompt-len >= 1, new-tokens >= 2, iters >= 1");
  // One model at a time, so that each peak holds only its own weights.
  const auto bf16 = measure("bf16", s.reference, s);
  std::printf("%s\n", bf16.dump().c_str());
  std::fflush(stdout);
  const auto integer = measure("integer", s.quantized, s);
  std::printf("%s\n", integer.dump().c_str());
  auto ratio = [&](const char* key) { return integer[key].get<double>() / std::max(1e-30, bf16[key].get<double>()); };
  nlohmann::json r = {{"bench", "generate_ratio"},
                      {"prefill_seconds", ratio("prefill_seconds")},
                      {"decode_seconds_per_token", ratio("decode_seconds_per_token")},
                      {"decode_tokens_per_second", ratio("decode_tokens_per_second")},
                      {"peak_memory_bytes", ratio("peak_memory_bytes")},
                      {"model_bytes", ratio("model_bytes")},
                      {"checkpoint_bytes", ratio("checkpoint_bytes")}};
  std::printf("%s\n", r.dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return qtrain::run_cli("bench_generate", &argc, &argv, [&] { return run(argc, argv); });
}
