// Chunked, fused ce + kd over the vocabulary: the forward computes each chunk's logits, its
// loss terms and its gradients at once; the backward only scales the stored gradients by
// the incoming one (the loss is a scalar, so that is the whole chain rule).
#include "distill/chunked_logit_loss.h"

#include <algorithm>

#include "common/compat.h"
#include "common/kernels.h"
#if QTRAIN_WITH_CUDA
#include "distill/cuda/fused_logit_loss.h"
#endif

namespace qtrain::distill {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// What the autograd Function gets besides the two differentiable inputs. The teacher's
// tensors and the labels travel here, untracked: no gradient flows to them.
struct Settings {
  ChunkedLogitLossOptions options;
  torch::Tensor teacher_hidden, teacher_weight, labels;
  torch::ScalarType matmul_dtype;  // of the student's logits
  bool hidden_grad, weight_grad;   // which gradients the backward will be asked for
};

// The reference's student linear runs under autocast: CUDA floating inputs (not fp64) are
// cast to the autocast dtype. Otherwise the hidden states' dtype.
torch::ScalarType student_matmul_dtype(const torch::Tensor& hidden) {
  const auto autocast = compat::cuda_autocast_dtype();
  if (autocast && hidden.is_cuda() && hidden.is_floating_point() && hidden.scalar_type() != torch::kFloat64)
    return *autocast;
  return hidden.scalar_type();
}

// KD of one chunk: adds the chunk's sum over tokens of KL(p_t || p_s) to `kd_sum` and returns
// d(beta * kd)/d(student logits) = beta * T / N * (p_s - p_t) when `want_grad`. Logits are fp32.
torch::Tensor kd_chunk(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits, double temperature,
                       double grad_scale, bool want_grad, torch::Tensor& kd_sum) {
  auto log_p_s = torch::log_softmax(student_logits / temperature, -1);
  auto log_p_t = torch::log_softmax(teacher_logits / temperature, -1);
  const auto p_t = log_p_t.exp();
  // Per token summed over the vocabulary in fp32, as kd_kl_loss does; tokens summed in fp64.
  kd_sum += log_p_t.sub_(log_p_s).mul_(p_t).sum(-1).sum(torch::kFloat64);
  if (!want_grad) return {};
  return log_p_s.exp_().sub_(p_t).mul_(grad_scale);
}

// CE of one chunk: adds the sum of -log p_s[label] over its counted tokens to `ce_sum` and
// returns d(alpha * ce)/d(student logits) = row_weight * (p_s - onehot(label)) when
// `want_grad`; row_weight is alpha / (counted tokens) for a counted token, 0 for an ignored one.
torch::Tensor ce_chunk(const torch::Tensor& logits, const torch::Tensor& labels, const torch::Tensor& row_weight,
                       bool want_grad, torch::Tensor& ce_sum) {
  const auto ignored = labels == kIgnoredLabel;
  const auto index = labels.masked_fill(ignored, 0).unsqueeze(1);
  auto log_p = torch::log_softmax(logits, -1);
  ce_sum -= log_p.gather(1, index).squeeze(1).masked_fill(ignored, 0).sum(torch::kFloat64);
  if (!want_grad) return {};
  auto grad = log_p.exp_();
  grad.scatter_add_(1, index, torch::full({logits.size(0), 1}, -1.0, grad.options()));
  return grad.mul_(row_weight.unsqueeze(1));
}

// The fused CUDA kernel (distill/cuda/logit_loss_kernel.cu) takes a chunk unless
// QTRAIN_LOSS_KERNEL=torch selects the LibTorch form above (benchmarks, tests).
bool fused_kernel(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits) {
#if QTRAIN_WITH_CUDA
  return fused_kernels_allowed(KernelFamily::loss) && cuda::fused_logit_loss_applies(student_logits, teacher_logits);
#else
  (void)student_logits;
  (void)teacher_logits;
  return false;
#endif
}

// One chunk through the fused kernel: the same terms and gradient as kd_chunk + ce_chunk.
torch::Tensor fused_chunk(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits, const Settings& s,
                          const torch::Tensor& row_weight, int64_t start, double kd_grad_scale, bool want_grad,
                          torch::Tensor& kd_sum, torch::Tensor& ce_sum) {
#if QTRAIN_WITH_CUDA
  const auto len = student_logits.size(0);
  auto out = cuda::fused_logit_loss(student_logits, teacher_logits, s.labels.narrow(0, start, len), row_weight,
                                    kIgnoredLabel, s.options.temperature, kd_grad_scale, want_grad, s.matmul_dtype);
  if (out.kd_row.defined()) kd_sum += out.kd_row.sum(torch::kFloat64);
  if (out.ce_row.defined()) ce_sum += out.ce_row.sum(torch::kFloat64);
  return out.grad;
#else
  (void)student_logits, (void)teacher_logits, (void)s, (void)row_weight, (void)start, (void)kd_grad_scale;
  (void)want_grad, (void)kd_sum, (void)ce_sum;
  TORCH_CHECK(false, "fused_chunk needs a CUDA build");
  return {};
#endif
}

class ChunkedLogitLoss : public torch::autograd::Function<ChunkedLogitLoss> {
 public:
  // -> {total, ce, kd}; only total is differentiable.
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& student_hidden,
                               const torch::Tensor& student_weight, const Settings& s) {
    compat::AutocastOffGuard no_autocast;  // every cast below is explicit
    const auto& o = s.options;
    const int64_t tokens = student_hidden.size(0);
    const bool want_grad = s.hidden_grad || s.weight_grad;
    const auto f32 = student_hidden.options().dtype(torch::kFloat32);
    auto ce_sum = torch::zeros({}, f32.dtype(torch::kFloat64)), kd_sum = torch::zeros({}, f32.dtype(torch::kFloat64));
    const auto counted = (s.labels != kIgnoredLabel).sum().to(torch::kFloat64);
    torch::Tensor row_weight;  // [N] fp32: alpha / counted for counted tokens, 0 for ignored ones
    if (o.alpha > 0)
      row_weight = (s.labels != kIgnoredLabel).to(torch::kFloat32) * (o.alpha / counted.clamp_min(1)).to(torch::kFloat32);
    // Cast once per call, as autocast's weight cache does for the reference.
    const auto weight = student_weight.to(s.matmul_dtype);
    const auto accumulate_dtype = c10::promoteTypes(student_weight.scalar_type(), torch::kFloat32);
    auto grad_hidden = s.hidden_grad ? torch::empty_like(student_hidden) : torch::Tensor();
    auto grad_weight = s.weight_grad ? torch::zeros(student_weight.sizes(), f32.dtype(accumulate_dtype)) : torch::Tensor();
    const double kd_grad_scale = o.beta * o.temperature / static_cast<double>(tokens);

    for (int64_t start = 0; start < tokens; start += o.chunk_tokens) {
      const auto len = std::min(o.chunk_tokens, tokens - start);
      const auto x = student_hidden.narrow(0, start, len).to(s.matmul_dtype);
      const auto student_logits = torch::linear(x, weight);  // [len, V] in the matmul dtype
      // The teacher's logits are a temporary: gone at the end of the chunk.
      const auto teacher_logits = o.beta > 0 ? torch::linear(s.teacher_hidden.narrow(0, start, len), s.teacher_weight)
                                             : torch::Tensor();
      torch::Tensor grad;  // d total / d logits [len, V]
      if (fused_kernel(student_logits, teacher_logits)) {
        grad = fused_chunk(student_logits, teacher_logits, s, o.alpha > 0 ? row_weight.narrow(0, start, len) : row_weight,
                           start, kd_grad_scale, want_grad, kd_sum, ce_sum);
      } else {
        const auto logits = student_logits.to(torch::kFloat32);
        if (o.beta > 0)
          grad = kd_chunk(logits, teacher_logits.to(torch::kFloat32), o.temperature, kd_grad_scale, want_grad, kd_sum);
        if (o.alpha > 0) {
          auto ce_grad =
              ce_chunk(logits, s.labels.narrow(0, start, len), row_weight.narrow(0, start, len), want_grad, ce_sum);
          grad = grad.defined() ? grad.add_(ce_grad) : ce_grad;
        }
      }
      if (!want_grad) continue;
      // The linear's backward, in the forward's matmul dtype (bf16 under autocast, as the
      // reference's autocast linear); the weight gradient accumulates over chunks in fp32.
      grad = grad.to(s.matmul_dtype);
      if (s.hidden_grad) grad_hidden.narrow(0, start, len).copy_(torch::mm(grad, weight));
      if (s.weight_grad) {
        if (grad_weight.scalar_type() == s.matmul_dtype)
          grad_weight.addmm_(grad.t(), x);
        else
          grad_weight.add_(torch::mm(grad.t(), x));
      }
    }

    const auto zero = torch::zeros({}, f32);
    const auto ce = o.alpha > 0 ? (ce_sum / counted).to(torch::kFloat32) : zero;
    const auto kd = o.beta > 0 ? (kd_sum * (o.temperature * o.temperature) / static_cast<double>(tokens)).to(torch::kFloat32)
                               : zero.clone();
    auto total = o.alpha * ce + o.beta * kd;
    ctx->saved_data["grad_hidden"] = grad_hidden;
    ctx->saved_data["grad_weight"] = grad_weight;
    ctx->saved_data["weight_dtype"] = static_cast<int64_t>(student_weight.scalar_type());
    ctx->mark_non_differentiable({ce, kd});
    return {total, ce, kd};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    // The stored gradients are scaled in place and released: a second backward through this
    // node (retain_graph) would be a bug.
    TORCH_CHECK(ctx->saved_data.count("released") == 0, "chunked_logit_loss: backward called twice");
    ctx->saved_data["released"] = true;
    const auto& g = grad_outputs[0];
    auto take = [&](const char* name) {
      auto saved = ctx->saved_data[name].toTensor();
      ctx->saved_data[name] = torch::Tensor();
      return saved.defined() ? saved.mul_(g) : saved;
    };
    auto grad_hidden = take("grad_hidden");
    auto grad_weight = take("grad_weight");
    if (grad_weight.defined())
      grad_weight = grad_weight.to(static_cast<torch::ScalarType>(ctx->saved_data["weight_dtype"].toInt()));
    return {grad_hidden, grad_weight, torch::Tensor()};
  }
};

}  // namespace

LogitLossTerms chunked_logit_loss(const torch::Tensor& student_hidden, const torch::Tensor& student_weight,
                                  const torch::Tensor& teacher_hidden, const torch::Tensor& teacher_weight,
                                  const torch::Tensor& labels, const ChunkedLogitLossOptions& options) {
  TORCH_CHECK(options.chunk_tokens > 0, "chunked_logit_loss: chunk_tokens must be positive");
  TORCH_CHECK(student_hidden.dim() == 2 && student_weight.dim() == 2 &&
                  student_hidden.size(1) == student_weight.size(1),
              "chunked_logit_loss: student hidden [N, H] and weight [V, H] expected");
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) == student_hidden.size(0) && labels.scalar_type() == torch::kInt64,
              "chunked_logit_loss: labels [N] int64 expected");
  if (options.beta > 0)
    TORCH_CHECK(teacher_hidden.defined() && teacher_weight.defined() && teacher_hidden.dim() == 2 &&
                    teacher_hidden.size(0) == student_hidden.size(0) && teacher_weight.size(0) == student_weight.size(0) &&
                    teacher_hidden.size(1) == teacher_weight.size(1),
                "chunked_logit_loss: teacher hidden [N, Ht] and weight [V, Ht] expected");
  const bool grad_mode = torch::GradMode::is_enabled();
  Settings settings{options,
                    teacher_hidden,
                    teacher_weight,
                    labels,
                    student_matmul_dtype(student_hidden),
                    grad_mode && student_hidden.requires_grad(),
                    grad_mode && student_weight.requires_grad()};
  auto out = ChunkedLogitLoss::apply(student_hidden, student_weight, settings);
  return {out[0], out[1], out[2]};
}

}  // namespace qtrain::distill
