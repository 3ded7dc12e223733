// Time and peak memory of the distillation logit loss (alpha * ce + beta * kd from the final
// hidden states, forward and backward): the full-logit reference (distill/kd_loss.h on
// [tokens x vocab] logits, as DistillLoss with distill.loss_chunk_tokens 0) against the
// chunked, fused loss (distill/chunked_logit_loss.h). One JSON line per implementation, then
// one with the chunked/reference ratios and how far apart their results are.
// Peak memory is the CUDA caching allocator's, above what the inputs already hold; on a CPU
// build it runs on the host (timings only: the host high-water mark cannot be reset).
#include <boost/program_options.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>

#include "bench/bench_options.h"
#include "common/cli_main.h"
#include "common/compat.h"
#include "common/device.h"
#include "common/memory.h"
#include "distill/chunked_logit_loss.h"
#include "distill/kd_loss.h"

namespace po = boost::program_options;
using qtrain::distill::LogitLossTerms;

namespace {

struct Inputs {
  torch::Tensor hidden, weight;                // student: fp32, with gradients (as under autocast)
  torch::Tensor teacher_hidden, teacher_weight;  // teacher: its own dtype, no gradients
  torch::Tensor labels;
};

struct Outcome {
  double seconds = 0;             // per forward + backward
  nlohmann::json peak = nullptr;  // bytes above the inputs; null off CUDA
  double total = 0, ce = 0, kd = 0;
  torch::Tensor hidden_grad, weight_grad;
  std::string error;  // e.g. CUDA out of memory
};

void synchronize(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

Outcome measure(const std::function<LogitLossTerms()>& loss, Inputs& in, const torch::Device& device,
                int64_t warmup, int64_t iters) {
  Outcome out;
  auto clear_grads = [&] {
    in.hidden.mutable_grad() = torch::Tensor();
    in.weight.mutable_grad() = torch::Tensor();
  };
  auto step = [&] {
    clear_grads();
    auto terms = loss();
    terms.total.backward();
    return terms;
  };
  try {
    for (int64_t i = 0; i < warmup; ++i) step();
    clear_grads();
    synchronize(device);
    qtrain::reset_peak_memory(device);
    const int64_t before = qtrain::peak_memory_bytes(device);
    LogitLossTerms terms;
    const auto start = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < iters; ++i) terms = step();
    synchronize(device);
    out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() /
                  static_cast<double>(iters);
    if (device.is_cuda()) out.peak = qtrain::peak_memory_bytes(device) - before;
    out.total = terms.total.item<double>();
    out.ce = terms.ce.item<double>();
    out.kd = terms.kd.item<double>();
    out.hidden_grad = in.hidden.grad().clone();
    out.weight_grad = in.weight.grad().clone();
  } catch (const c10::Error& e) {
    const std::string what = e.what();
    out.error = what.substr(0, what.find('\n'));
  }
  clear_grads();
  return out;
}

double relative_difference(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>() /
         b.to(torch::kFloat64).abs().max().item<double>();
}

int run(int argc, char** argv) {
  int64_t tokens, hidden, teacher_hidden, vocab, chunk, warmup, iters;
  double alpha, beta, temperature;
  std::string device_name, dtype_name;
  po::options_description desc(
      "bench_kd_loss: full-logit vs chunked distillation loss + backward (on a CPU, pass small shapes)\nOptions");
  desc.add_options()("help,h", "show this help")
      ("tokens", po::value(&tokens)->default_value(16384), "tokens per micro-batch (batch x seq)")
      ("hidden", po::value(&hidden)->default_value(2048), "student hidden_size")
      ("teacher-hidden", po::value(&teacher_hidden)->default_value(0), "teacher hidden_size; 0 = the student's")
      ("vocab", po::value(&vocab)->default_value(128256), "vocab_size")
      ("chunk", po::value(&chunk)->default_value(1024), "tokens per chunk (distill.loss_chunk_tokens)")
      ("alpha", po::value(&alpha)->default_value(0.5), "weight of the cross-entropy")
      ("beta", po::value(&beta)->default_value(1.0), "weight of the KL term")
      ("temperature", po::value(&temperature)->default_value(1.0), "KD temperature")
      ("warmup", po::value(&warmup)->default_value(1), "untimed iterations first")
      ("iters", po::value(&iters)->default_value(5), "timed iterations")
      ("device", po::value(&device_name)->default_value("auto"), "auto|cpu|cuda")
      ("dtype", po::value(&dtype_name)->default_value("auto"), "student autocast and teacher dtype: auto|fp32|bf16|fp16");
  if (!qtrain::bench::parse_options(desc, argc, argv)) return 0;
  if (teacher_hidden == 0) teacher_hidden = hidden;
  const auto device = qtrain::resolve_device(device_name);
  const auto dtype = qtrain::resolve_dtype(dtype_name, device);

  torch::manual_seed(0);
  const auto f32 = torch::TensorOptions().device(device).dtype(torch::kFloat32);
  Inputs in;
  in.hidden = torch::randn({tokens, hidden}, f32).requires_grad_();
  in.weight = (torch::randn({vocab, hidden}, f32) * 0.02).requires_grad_();
  in.teacher_hidden = torch::randn({tokens, teacher_hidden}, f32).to(dtype);
  in.teacher_weight = (torch::randn({vocab, teacher_hidden}, f32) * 0.02).to(dtype);
  in.labels = torch::randint(0, vocab, {tokens}, f32.dtype(torch::kInt64));

  // As DistillLoss: teacher logits without autocast in the teacher's dtype, then the student
  // under autocast; the backward runs after the autocast scope, as in the training step.
  auto reference = [&]() -> LogitLossTerms {
    torch::Tensor teacher_logits;
    {
      torch::NoGradGuard no_grad;
      teacher_logits = torch::linear(in.teacher_hidden, in.teacher_weight);
    }
    qtrain::compat::AutocastGuard autocast(device, dtype);
    const auto logits = torch::linear(in.hidden, in.weight);
    const auto ce = qtrain::distill::next_token_cross_entropy(logits, in.labels);
    const auto kd = qtrain::distill::kd_kl_loss(logits, teacher_logits, temperature);
    return {alpha * ce + beta * kd, ce.detach(), kd.detach()};
  };
  auto chunked = [&]() -> LogitLossTerms {
    qtrain::compat::AutocastGuard autocast(device, dtype);
    return qtrain::distill::chunked_logit_loss(in.hidden, in.weight, in.teacher_hidden, in.teacher_weight, in.labels,
                                               {alpha, beta, temperature, chunk});
  };

  const nlohmann::json shape = {{"tokens", tokens}, {"hidden", hidden}, {"teacher_hidden", teacher_hidden},
                                {"vocab", vocab},   {"chunk", chunk},   {"temperature", temperature}};
  auto report = [&](const char* impl, const Outcome& o) {
    nlohmann::json j = {{"bench", "kd_loss"}, {"impl", impl}, {"device", qtrain::describe(device, dtype)},
                        {"shape", shape}};
    if (!o.error.empty()) {
      j["error"] = o.error;
    } else {
      j.update({{"seconds", o.seconds}, {"peak_memory_bytes", o.peak}, {"loss", o.total}, {"ce", o.ce}, {"kd", o.kd}});
    }
    std::printf("%s\n", j.dump().c_str());
    std::fflush(stdout);
  };
  const auto full = measure(reference, in, device, warmup, iters);
  report("full_logits", full);
  const auto fused = measure(chunked, in, device, warmup, iters);
  report("chunked", fused);
  if (full.error.empty() && fused.error.empty()) {
    nlohmann::json j = {{"bench", "kd_loss"},
                        {"impl", "chunked_vs_full"},
                        {"device", qtrain::describe(device, dtype)},
                        {"shape", shape},
                        {"time_ratio", fused.seconds / full.seconds},
                        {"peak_memory_ratio", nullptr},
                        {"loss_relative_difference", std::abs(fused.total - full.total) / std::abs(full.total)},
                        {"hidden_grad_relative_difference", relative_difference(fused.hidden_grad, full.hidden_grad)},
                        {"weight_grad_relative_difference", relative_difference(fused.weight_grad, full.weight_grad)}};
    if (device.is_cuda())
      j["peak_memory_ratio"] = fused.peak.get<double>() / std::max(1.0, full.peak.get<double>());
    std::printf("%s\n", j.dump().c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return qtrain::run_cli("bench_kd_loss", &argc, &argv, [&] { return run(argc, argv); });
}
