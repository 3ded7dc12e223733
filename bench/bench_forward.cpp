// Forward throughput of the model (no grad), for a random model of a given Llama shape:
// tokens/s, achieved TFLOP/s and MFU against the dense bf16 peak. Prints one JSON line.
// FLOPs per token (docs/performance.md): 2 x matmul parameters (lm_head included, the
// embedding lookup not) + 2 x layers x seq x heads x head_dim (QK^T and PV, causal half).
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "bench/bench_options.h"
#include "common/cli_main.h"
#include "common/device.h"
#include "model/causal_lm.h"

namespace po = boost::program_options;

namespace {

double forward_flops_per_token(const qtrain::model::ModelConfig& c, int64_t seq) {
  const double h = c.hidden_size, q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
  const double per_layer = h * q + 2 * h * kv + q * h + 3 * h * c.intermediate_size;
  const double matmul = c.num_hidden_layers * per_layer + c.vocab_size * h;
  return 2 * matmul + 2.0 * c.num_hidden_layers * seq * q;
}

int run(int argc, char** argv) {
  int64_t hidden, layers, heads, kv_heads, intermediate, vocab, batch, seq, iters, warmup;
  std::string device_name, dtype_name;
  double peak_tflops;
  bool tied;
  po::options_description desc("bench_forward: forward tokens/s of a random Llama-shape model\nOptions");
  desc.add_options()("help,h", "show this help")
      ("hidden", po::value(&hidden)->default_value(2048), "hidden_size")
      ("layers", po::value(&layers)->default_value(16), "num_hidden_layers")
      ("heads", po::value(&heads)->default_value(32), "num_attention_heads")
      ("kv-heads", po::value(&kv_heads)->default_value(8), "num_key_value_heads")
      ("intermediate", po::value(&intermediate)->default_value(8192), "intermediate_size")
      ("vocab", po::value(&vocab)->default_value(128256), "vocab_size")
      ("tied", po::value(&tied)->default_value(true), "tie_word_embeddings")
      ("batch", po::value(&batch)->default_value(8), "sequences per forward")
      ("seq", po::value(&seq)->default_value(2048), "tokens per sequence")
      ("warmup", po::value(&warmup)->default_value(3), "untimed forwards first")
      ("iters", po::value(&iters)->default_value(10), "timed forwards")
      ("device", po::value(&device_name)->default_value("auto"), "auto|cpu|cuda")
      ("dtype", po::value(&dtype_name)->default_value("auto"), "auto|fp32|bf16|fp16")
      ("peak-tflops", po::value(&peak_tflops)->default_value(989.4), "dense peak of the GPU (H100/H200 SXM bf16: 989.4)");
  if (!qtrain::bench::parse_options(desc, argc, argv)) return 0;

  qtrain::model::ModelConfig c;
  c.model_type = "llama";
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.intermediate_size = intermediate;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv_heads;
  c.head_dim = hidden / heads;
  c.max_position_embeddings = seq;
  c.rms_norm_eps = 1e-5;
  c.rope.theta = 500000.0;
  c.tie_word_embeddings = tied;
  const auto device = qtrain::resolve_device(device_name);
  const auto dtype = qtrain::resolve_dtype(dtype_name, device);

  qtrain::model::CausalLM model(c);
  qtrain::model::init_weights(*model, 0.02, 1234);
  model->to(device, dtype);
  model->eval();
  torch::NoGradGuard no_grad;
  const auto ids = torch::randint(0, vocab, {batch, seq}, torch::TensorOptions().dtype(torch::kInt64).device(device));
  auto sync = [&] {
    if (device.is_cuda()) torch::cuda::synchronize(device.index());
  };
  for (int64_t i = 0; i < warmup; ++i) model->forward(ids);
  sync();
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < iters; ++i) model->forward(ids);
  sync();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double tokens_per_second = static_cast<double>(batch * seq * iters) / seconds;
  const double tflops = tokens_per_second * forward_flops_per_token(c, seq) / 1e12;
  nlohmann::json j = {{"bench", "forward"},      {"impl", "qtrain"},
                      {"device", qtrain::describe(device, dtype)},
                      {"parameters", c.num_parameters()},
                      {"batch", batch},          {"seq", seq},
                      {"tokens_per_second", tokens_per_second},
                      {"tflops", tflops},        {"mfu", tflops / peak_tflops},
                      {"seconds_per_forward", seconds / static_cast<double>(iters)}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return qtrain::run_cli("bench_forward", &argc, &argv, [&] { return run(argc, argv); });
}
