// Memory and time model of a distillation job.
#include "trainer/estimate.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "common/json_file.h"
#include "model/flops.h"
#include "model/model_config.h"
#include "trainer/models.h"

namespace qtrain::trainer {

namespace {

constexpr double kActivationBytesPerTokenPerLayerPerHidden = 34.0;  // Korthikanti et al. 2022, bf16, flash attention
// bf16 logits, fp32 copies, softmaxes, products: 40 B per logit of the tokens whose logits
// exist at once (all of a micro-batch's, or one chunk's with distill.loss_chunk_tokens;
// measured 47.1 GiB and 31.9 GiB peaks for the 1B job, docs/performance.md).
constexpr double kLossBytesPerLogit = 40.0;
constexpr double kAssumedMfu = 0.30;         // measured 27-31% for the 1B job (docs/performance.md)
constexpr double kGpuPeak = 989.4e12;        // H100/H200 dense bf16
constexpr double kAdamWChunk = 1 << 22;      // elements the update does at once (trainer/adamw.h)

model::ModelConfig student_config(const config::ModelSection& m, const model::ModelConfig* teacher) {
  if (m.student_source() == config::StudentSource::copy) return *teacher;
  if (m.student_source() == config::StudentSource::config) {
    nlohmann::json raw = teacher ? teacher->raw : nlohmann::json::object();
    if (!m.student_config.empty()) {
      raw = read_json_file(m.student_config, "model.student_config");
    }
    return model::ModelConfig::from_json(apply_overrides(raw, m.student_overrides), "student config");
  }
  return model::ModelConfig::from_file((std::filesystem::path(m.student) / "config.json").string());
}

std::string gb(double bytes) {
  char text[32];
  if (bytes < 1e9)
    std::snprintf(text, sizeof(text), "%.0f MB", bytes / 1e6);
  else
    std::snprintf(text, sizeof(text), "%.1f GB", bytes / 1e9);
  return text;
}

}  // namespace

JobEstimate estimate_job(const config::JobConfig& job, int ranks, bool on_gpu) {
  JobEstimate e;
  try {
    std::unique_ptr<model::ModelConfig> teacher;
    if (job.model.teacher)
      teacher = std::make_unique<model::ModelConfig>(
          model::ModelConfig::from_file((std::filesystem::path(*job.model.teacher) / "config.json").string()));
    const auto student = student_config(job.model, teacher.get());
    const double tokens = static_cast<double>(job.data.micro_batch_size * job.data.seq_len);
    const double compute_bytes = on_gpu ? 2.0 : 4.0;  // bf16 on GPU, fp32 on CPU
    e.student_parameters = static_cast<double>(student.num_parameters());
    e.zero_stage = static_cast<int>(job.parallel.zero_stage);
    e.shards = e.zero_stage >= 1 ? std::max(1, ranks) : 1;
    const double n = e.shards, p = e.student_parameters;
    // A bucket is parallel.bucket_mb, or one parameter where a single one is larger (a
    // bucket never splits one: the embeddings and the lm_head often are); fp32.
    const double largest_parameter =
        static_cast<double>(std::max({student.vocab_size * student.hidden_size,
                                      student.intermediate_size * student.hidden_size,
                                      student.num_attention_heads * student.head_dim * student.hidden_size}));
    const double bucket = std::max(static_cast<double>(job.parallel.bucket_mb << 20), 4.0 * largest_parameter);
    // fp32 master weights (4), gradients (4) and AdamW's two fp32 moments (8) per parameter,
    // each divided over the ranks from the stage that shards it.
    e.weights_bytes = 4.0 * p / (e.zero_stage >= 3 ? n : 1.0);
    e.grads_bytes = e.zero_stage >= 2 ? 4.0 * p / n + 2.0 * bucket : 4.0 * p;  // + two staging buckets
    // + one chunk of the update's denominator (trainer/adamw.h)
    e.optimizer_bytes = 8.0 * p / n + 4.0 * std::min(kAdamWChunk, e.zero_stage >= 1 ? p / n : p);
    // MPI's non-blocking collectives hold temporaries of about their message while in
    // flight, at most 4 at once (trainer/mpi_collective.h); NCCL works in place.
    if (!on_gpu && ranks > 1) e.collective_bytes = 4.0 * bucket;
    e.weights_grads_optimizer_bytes = e.weights_bytes + e.grads_bytes + e.optimizer_bytes;
    // ZeRO-Offload: the shards live in host memory; the device keeps the staging buckets.
    e.offloaded = job.parallel.offload_optimizer && e.zero_stage >= 3 && on_gpu;
    double device_state = e.weights_grads_optimizer_bytes;
    if (e.offloaded) {
      e.host_bytes = e.weights_grads_optimizer_bytes - 2.0 * bucket;
      device_state = 2.0 * bucket;
    }
    const bool checkpointed = job.training.activation_checkpointing;
    if (e.zero_stage >= 3) {
      // The root unit (embeddings, final norm, lm_head) for the step, two decoder layers at
      // once (one running, the next prefetched), and one layer's gradients before packing.
      const double root = static_cast<double>(student.root_parameters());
      const double layer = (p - root) / static_cast<double>(student.num_hidden_layers);
      e.gathered_bytes = compute_bytes * (root + 3.0 * layer);
    } else {
      e.autocast_copies_bytes = on_gpu ? 2.0 * p : 0.0;
    }
    // Fake quantization keeps, for backward, the fake-quantized weight that the matmul saves
    // (on the GPU at stages 0-2 it takes the place of the bf16 autocast copy), and on the CPU
    // the STE's 1-byte range mask, plus v and q (8 bytes) with learned (LSQ) scales
    // (quant/quant_math.cpp; the CUDA kernel saves its input, the weight itself). For every
    // decoder layer at once, or one layer's with activation checkpointing.
    if (!job.quant.rules.empty() && (!on_gpu || e.zero_stage >= 3)) {
      const double per_weight = compute_bytes + (on_gpu ? 0.0 : 1.0 + (job.quant.learnable_scales ? 8.0 : 0.0));
      const double root = static_cast<double>(student.root_parameters());
      const double layer = (p - root) / static_cast<double>(student.num_hidden_layers);
      e.fake_quant_bytes = per_weight * (checkpointed ? layer : p - root);
    }
    if (teacher) {
      const double t = static_cast<double>(teacher->num_parameters());
      e.teacher_parameters = t;
      if (e.zero_stage >= 3 && job.parallel.shard_teacher) {
        const double root = static_cast<double>(teacher->root_parameters());
        const double layer = (t - root) / static_cast<double>(teacher->num_hidden_layers);
        e.teacher_bytes = compute_bytes * (t / n + root + 2.0 * layer);
        e.teacher_sharded = true;
      } else {
        e.teacher_bytes = compute_bytes * t;
      }
    }
    // On the CPU (fp32, attention in plain LibTorch ops), per token: the norms' inputs and
    // outputs, q and the attention output (9 x hidden with the rest), k and v before and after
    // RoPE (3 x the kv width), the MLP's four products of the intermediate width, and the
    // attention probabilities (heads x seq_len).
    const double kv_width = static_cast<double>(student.num_key_value_heads * student.head_dim);
    const double per_layer =
        on_gpu ? kActivationBytesPerTokenPerLayerPerHidden * tokens * student.hidden_size
               : 4.0 * tokens *
                     (9.0 * student.hidden_size + 3.0 * kv_width + 4.0 * student.intermediate_size +
                      static_cast<double>(student.num_attention_heads * job.data.seq_len));
    e.activation_bytes = checkpointed ? compute_bytes * tokens * student.hidden_size * student.num_hidden_layers + per_layer
                                      : per_layer * student.num_hidden_layers;
    const double loss_tokens = job.distill.loss_chunk_tokens > 0
                                   ? std::min(tokens, static_cast<double>(job.distill.loss_chunk_tokens))
                                   : tokens;
    e.logits_bytes = kLossBytesPerLogit * loss_tokens * student.vocab_size;
    e.total_bytes = device_state + e.gathered_bytes + e.autocast_copies_bytes + e.fake_quant_bytes +
                    e.teacher_bytes + e.activation_bytes + e.logits_bytes + e.collective_bytes;
    // At ZeRO-3 the activation and taylor importance passes of pruning gather both models
    // whole (their gradients must stay unreduced: trainer/session.h, Shards::whole_models),
    // in place of the units that a step gathers; the passes' activations are a step's.
    if (e.zero_stage >= 3 && job.prune.enabled() && job.prune.importance != config::Importance::magnitude) {
      const double whole = compute_bytes * (p + e.teacher_parameters);
      const double teacher_step = e.teacher_sharded ? e.teacher_bytes : 0.0;
      e.pruning_peak_bytes = e.total_bytes - e.gathered_bytes - teacher_step - e.fake_quant_bytes + whole;
      e.total_bytes = std::max(e.total_bytes, e.pruning_peak_bytes);
    }
    e.tokens_per_step = static_cast<double>(job.data.global_batch_size * job.data.seq_len);
    e.flops_per_step = e.tokens_per_step * model::distill_flops_per_token(student, teacher.get(), job.data.seq_len);
  } catch (const std::exception& ex) {
    e.problem = ex.what();
  }
  return e;
}

std::string describe_estimate(const JobEstimate& e, int ranks, bool on_gpu) {
  if (!e.problem.empty()) return "# estimate: not available (" + e.problem + ")\n";
  char line[320];
  std::string out = "# estimate per rank (" + std::to_string(ranks) + " rank" + (ranks > 1 ? "s" : "") + ", " +
                    (on_gpu ? "GPU, bf16 compute" : "CPU, fp32") + "; docs/trainer.md):\n";
  std::string sharding;
  if (e.shards > 1) {
    static const char* what[] = {"", "AdamW", "AdamW and gradients", "AdamW, gradients and weights"};
    sharding = " (ZeRO-" + std::to_string(e.zero_stage) + ": " + what[e.zero_stage] + " sharded over " +
               std::to_string(e.shards) + " ranks)";
  }
  std::snprintf(line, sizeof(line), "#   student %.3gB parameters: weights %s + gradients %s + AdamW %s = %s%s\n",
                e.student_parameters / 1e9, gb(e.weights_bytes).c_str(), gb(e.grads_bytes).c_str(),
                gb(e.optimizer_bytes).c_str(), gb(e.weights_grads_optimizer_bytes).c_str(), sharding.c_str());
  out += line;
  if (e.offloaded) {
    std::snprintf(line, sizeof(line), "#   offloaded to host memory: %s of those (parallel.offload_optimizer); the GPU keeps two staging buckets\n",
                  gb(e.host_bytes).c_str());
    out += line;
  }
  if (e.gathered_bytes > 0) {
    std::snprintf(line, sizeof(line), "#   gathered units (root + 2 decoder layers) %s\n", gb(e.gathered_bytes).c_str());
    out += line;
  }
  if (e.fake_quant_bytes > 0) {
    std::snprintf(line, sizeof(line), "#   fake-quantized weights kept for backward %s\n", gb(e.fake_quant_bytes).c_str());
    out += line;
  }
  if (e.autocast_copies_bytes > 0) {
    std::snprintf(line, sizeof(line), "#   bf16 copies of the weights %s\n", gb(e.autocast_copies_bytes).c_str());
    out += line;
  }
  if (e.teacher_parameters > 0) {
    std::snprintf(line, sizeof(line), "#   teacher %.3gB parameters: %s%s\n", e.teacher_parameters / 1e9,
                  gb(e.teacher_bytes).c_str(), e.teacher_sharded ? " (sharded, gathered layer by layer)" : "");
    out += line;
  }
  if (e.collective_bytes > 0) {
    std::snprintf(line, sizeof(line), "#   MPI's buffers for the collectives in flight %s\n", gb(e.collective_bytes).c_str());
    out += line;
  }
  if (e.pruning_peak_bytes > 0) {
    std::snprintf(line, sizeof(line), "#   the pruning importance passes gather both models whole: %s while they run\n",
                  gb(e.pruning_peak_bytes).c_str());
    out += line;
  }
  std::snprintf(line, sizeof(line), "#   activations %s, loss over the vocabulary %s\n#   total about %s%s\n",
                gb(e.activation_bytes).c_str(), gb(e.logits_bytes).c_str(), gb(e.total_bytes).c_str(),
                e.offloaded ? (" on the GPU, plus " + gb(e.host_bytes) + " of host memory").c_str() : "");
  out += line;
  if (on_gpu) {
    const double seconds = e.flops_per_step / (kGpuPeak * kAssumedMfu * ranks);
    std::snprintf(line, sizeof(line), "#   time per step on H100/H200 at %.0f%% MFU: %.2f s (%.0f tokens per step)\n",
                  kAssumedMfu * 100, seconds, e.tokens_per_step);
  } else {
    std::snprintf(line, sizeof(line), "#   %.3g TFLOP per step (%.0f tokens); CPU time depends on the machine\n",
                  e.flops_per_step / 1e12, e.tokens_per_step);
  }
  out += line;
  return out;
}

}  // namespace qtrain::trainer
