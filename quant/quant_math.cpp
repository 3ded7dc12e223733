// Quantization arithmetic and the straight-through fake-quant autograd function.
#include "quant/quant_math.h"

#include <cmath>

#include "common/compat.h"
#include "common/error.h"
#include "common/kernels.h"
#if QTRAIN_WITH_CUDA
#include "quant/cuda/fused_fake_quant.h"
#endif

namespace qtrain::quant {

namespace {

double grid_min(const QuantArgs& a) { return a.is_float() ? -kFp8E4M3Max : static_cast<double>(a.qmin()); }
double grid_max(const QuantArgs& a) { return a.is_float() ? kFp8E4M3Max : static_cast<double>(a.qmax()); }

torch::Tensor round_to_grid(const torch::Tensor& clamped, const QuantArgs& a) {
  return a.is_float() ? round_to_fp8_e4m3(clamped) : torch::round(clamped);  // torch::round: half to even
}

// Straight-through fake quantization on a unit view.
class FakeQuantizeFunction : public torch::autograd::Function<FakeQuantizeFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& view,
                               const torch::Tensor& scale, const torch::Tensor& zero_point, double qmin, double qmax,
                               bool is_float) {
    auto v = view / scale + zero_point;
    auto inside = (v >= qmin).logical_and(v <= qmax);
    auto clamped = v.clamp(qmin, qmax);
    auto q = is_float ? round_to_fp8_e4m3(clamped) : torch::round(clamped);
    // The STE needs only the 1-byte mask; v and q (8 bytes per element) only a learned scale.
    if (scale.requires_grad()) {
      ctx->save_for_backward({inside, v, q});
      ctx->saved_data["scale_numel"] = scale.numel();
      ctx->saved_data["qmax"] = qmax;
    } else {
      ctx->save_for_backward({inside});
    }
    return (q - zero_point) * scale;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& inside = saved[0];
    const auto& g = grads[0];
    auto grad_view = g * inside.to(g.scalar_type());
    if (saved.size() == 1 || !ctx->needs_input_grad(1))
      return {grad_view, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
    const auto& v = saved[1];
    const auto& q = saved[2];
    // LSQ: d(out)/d(scale) = q - v inside the range, the clamped grid value outside.
    const double qmax = ctx->saved_data["qmax"].toDouble();
    const auto per_unit = static_cast<double>(v.numel()) / static_cast<double>(ctx->saved_data["scale_numel"].toInt());
    const double lsq_scale = 1.0 / std::sqrt(per_unit * qmax);
    auto d_scale = torch::where(inside, q - v, q);
    auto grad_scale = (g * d_scale).sum(-1, /*keepdim=*/true) * lsq_scale;
    return {grad_view, grad_scale, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor unit_view(const torch::Tensor& x, const QuantArgs& a) {
  switch (a.strategy) {
    case Strategy::tensor: return x.reshape({1, -1});
    case Strategy::channel: return x.reshape({x.size(0), -1});
    case Strategy::token: return x.reshape({-1, x.size(-1)});
    case Strategy::group: {
      const auto cols = x.size(-1);
      if (a.group_size <= 0 || cols % a.group_size != 0)
        throw Error("group size " + std::to_string(a.group_size) + " does not divide the " + std::to_string(cols) +
                    " input columns")
            .expected("a group size that divides every quantized linear's in_features");
      return x.reshape({-1, a.group_size});
    }
  }
  return x;
}

QParams qparams_from_minmax(const torch::Tensor& min_vals, const torch::Tensor& max_vals, const QuantArgs& a,
                            torch::ScalarType scale_dtype) {
  auto lo = torch::minimum(min_vals.to(torch::kFloat32), torch::zeros_like(min_vals, torch::kFloat32));
  auto hi = torch::maximum(max_vals.to(torch::kFloat32), torch::zeros_like(max_vals, torch::kFloat32));
  const double qmin = grid_min(a), qmax = grid_max(a), range = qmax - qmin;
  QParams qp;
  if (a.symmetric) {
    qp.scale = torch::maximum(lo.abs(), hi.abs()) / (range / 2.0);
  } else {
    qp.scale = (hi - lo) / range;
  }
  // A unit of zeros has scale 0: compressed-tensors uses the storage dtype's epsilon instead.
  const double eps = scale_dtype == torch::kFloat32 ? 1.1920928955078125e-07
                     : scale_dtype == torch::kFloat16 ? 0.0009765625
                                                       : 0.0078125;  // bf16
  qp.scale = torch::where(qp.scale > 0, qp.scale, torch::full_like(qp.scale, eps));
  qp.scale = qp.scale.to(scale_dtype).to(torch::kFloat32);
  if (a.symmetric) qp.zero_point = torch::zeros_like(qp.scale);
  else qp.zero_point = torch::round((qmin - lo / qp.scale).clamp(qmin, qmax));
  return qp;
}

QParams compute_qparams(const torch::Tensor& x, const QuantArgs& a, torch::ScalarType scale_dtype) {
  auto view = unit_view(x.detach(), a);
#if QTRAIN_WITH_CUDA
  // One kernel instead of aminmax and a dozen element-wise ops: same bits (quant/cuda/qparams_kernel.cu).
  if (view.is_cuda() && fused_fake_quant_allowed() && cuda::fused_minmax_qparams_applies(view)) {
    auto [scale, zero_point] = cuda::fused_minmax_qparams(view, grid_min(a), grid_max(a), a.symmetric, scale_dtype);
    return {scale, zero_point};
  }
#endif
  if (!view.is_cuda()) view = view.to(torch::kFloat32);  // min/max are exact in any dtype; CPU kernels want fp32
  const auto [lo, hi] = torch::aminmax(view, /*dim=*/-1, /*keepdim=*/true);  // one pass over the data
  return qparams_from_minmax(lo, hi, a, scale_dtype);
}

torch::Tensor quantize(const torch::Tensor& view, const QParams& qp, const QuantArgs& a) {
  auto v = view.to(torch::kFloat32) / qp.scale + qp.zero_point;
  return round_to_grid(v.clamp(grid_min(a), grid_max(a)), a);
}

torch::Tensor dequantize(const torch::Tensor& q, const QParams& qp) { return (q - qp.zero_point) * qp.scale; }

torch::Tensor fake_quantize_unfused(const torch::Tensor& x, const QParams& qp, const QuantArgs& a) {
  const auto view = unit_view(x, a).to(torch::kFloat32);
  auto out = FakeQuantizeFunction::apply(view, qp.scale, qp.zero_point, grid_min(a), grid_max(a), a.is_float());
  return out.reshape(x.sizes()).to(x.scalar_type());
}

bool fused_fake_quant_allowed() { return fused_kernels_allowed(KernelFamily::fake_quant); }

namespace {

torch::Tensor fake_quantize_as(const torch::Tensor& x, const QParams& qp, const QuantArgs& a,
                               std::optional<torch::ScalarType> out_dtype) {
#if QTRAIN_WITH_CUDA
  if (x.is_cuda() && fused_fake_quant_allowed()) {
    const auto view = unit_view(x, a);
    if (cuda::fused_fake_quantize_applies(view, qp.scale, view.size(1)))
      return cuda::fused_fake_quantize(view, qp.scale, qp.zero_point, view.size(1), grid_min(a), grid_max(a),
                                       a.is_float(), out_dtype)
          .reshape(x.sizes());
  }
#endif
  auto out = fake_quantize_unfused(x, qp, a);
  return out_dtype ? out.to(*out_dtype) : out;
}

}  // namespace

torch::Tensor fake_quantize(const torch::Tensor& x, const QParams& qp, const QuantArgs& a) {
  return fake_quantize_as(x, qp, a, std::nullopt);
}

torch::Tensor fake_quantize_for_matmul(const torch::Tensor& x, const QParams& qp, const QuantArgs& a) {
  const auto autocast = compat::cuda_autocast_dtype();
  const bool narrows = autocast && x.is_cuda() && x.scalar_type() == torch::kFloat32;
  return fake_quantize_as(x, qp, a, narrows ? autocast : std::nullopt);
}

torch::Tensor round_to_fp8_e4m3(const torch::Tensor& x) {
  // E4M3: 3 mantissa bits; normal exponents from -6; below 2^-6 the step stays 2^-9 (subnormals).
  auto magnitude = x.abs().clamp_min(std::ldexp(1.0, -6));
  auto exponent = torch::floor(torch::log2(magnitude));
  auto step = torch::pow(2.0, exponent - 3);
  return torch::round(x / step) * step;
}

}  // namespace qtrain::quant
