// Quantization arithmetic and the straight-through fake-quant autograd function.
#include "quant/quant_math.h"

#include <cmath>

#include "common/compat.h"
#include "common/error.h"
#include "common/kernels.h"
#include "quant/fp4.h"
#include "quant/fp8.h"
#if QTRAIN_WITH_CUDA
#include "quant/cuda/fused_fake_quant.h"
#endif

namespace qtrain::quant {

namespace {

double grid_min(const QuantArgs& a) { return a.is_float() ? -a.grid_max() : static_cast<double>(a.qmin()); }
double grid_max(const QuantArgs& a) { return a.grid_max(); }

// The value grids, as the fused kernel numbers them (quant/cuda/fake_quant_kernel.h).
enum Grid : int64_t { kIntegerGrid = 0, kFp8Grid = 1, kFp4Grid = 2 };
int64_t grid_of(const QuantArgs& a) { return !a.is_float() ? kIntegerGrid : a.is_fp4() ? kFp4Grid : kFp8Grid; }

torch::Tensor round_to_grid(const torch::Tensor& clamped, int64_t grid) {
  if (grid == kFp8Grid) return round_to_fp8_e4m3(clamped);
  if (grid == kFp4Grid) return round_to_fp4_e2m1(clamped);
  return torch::round(clamped);  // half to even
}

// Straight-through fake quantization on a unit view.
class FakeQuantizeFunction : public torch::autograd::Function<FakeQuantizeFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& view,
                               const torch::Tensor& scale, const torch::Tensor& zero_point,
                               const torch::Tensor& dequant_scale, double qmin, double qmax, int64_t grid) {
    auto v = view / scale + zero_point;
    auto inside = (v >= qmin).logical_and(v <= qmax);
    auto q = round_to_grid(v.clamp(qmin, qmax), grid);
    // The STE needs only the 1-byte mask; v and q (8 bytes per element) only a learned scale.
    if (scale.requires_grad()) {
      ctx->save_for_backward({inside, v, q});
      ctx->saved_data["scale_numel"] = scale.numel();
      ctx->saved_data["qmax"] = qmax;
    } else {
      ctx->save_for_backward({inside});
    }
    return (q - zero_point) * dequant_scale;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& inside = saved[0];
    const auto& g = grads[0];
    auto grad_view = g * inside.to(g.scalar_type());
    if (saved.size() == 1 || !ctx->needs_input_grad(1))
      return {grad_view, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
    const auto& v = saved[1];
    const auto& q = saved[2];
    // LSQ: d(out)/d(scale) = q - v inside the range, the clamped grid value outside.
    const double qmax = ctx->saved_data["qmax"].toDouble();
    const auto per_unit = static_cast<double>(v.numel()) / static_cast<double>(ctx->saved_data["scale_numel"].toInt());
    const double lsq_scale = 1.0 / std::sqrt(per_unit * qmax);
    auto d_scale = torch::where(inside, q - v, q);
    auto grad_scale = (g * d_scale).sum(-1, /*keepdim=*/true) * lsq_scale;
    return {grad_view, grad_scale, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

namespace {

int64_t round_up(int64_t n, int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

torch::Tensor block_view(const torch::Tensor& x, const QuantArgs& a) {
  const auto br = a.block_rows, bc = a.block_cols;
  if (x.dim() != 2 || br <= 0 || bc <= 0)
    throw Error("block quantization needs a matrix and a block_structure").expected("a 2-D weight, block_structure [rows, cols]");
  const auto rows = round_up(x.size(0), br), cols = round_up(x.size(1), bc);
  auto padded = rows == x.size(0) && cols == x.size(1) ? x : torch::constant_pad_nd(x, {0, cols - x.size(1), 0, rows - x.size(0)});
  return padded.reshape({rows / br, br, cols / bc, bc}).permute({0, 2, 1, 3}).reshape({-1, br * bc});
}

}  // namespace

torch::Tensor from_unit_view(const torch::Tensor& view, at::IntArrayRef sizes, const QuantArgs& a) {
  if (a.strategy != Strategy::block) return view.reshape(sizes);
  const auto br = a.block_rows, bc = a.block_cols;
  const auto rows = round_up(sizes[0], br), cols = round_up(sizes[1], bc);
  auto padded = view.reshape({rows / br, cols / bc, br, bc}).permute({0, 2, 1, 3}).reshape({rows, cols});
  if (rows == sizes[0] && cols == sizes[1]) return padded;
  return padded.narrow(0, 0, sizes[0]).narrow(1, 0, sizes[1]);
}

torch::Tensor unit_view(const torch::Tensor& x, const QuantArgs& a) {
  switch (a.strategy) {
    case Strategy::tensor: return x.reshape({1, -1});
    case Strategy::channel: return x.reshape({x.size(0), -1});
    case Strategy::token: return x.reshape({-1, x.size(-1)});
    case Strategy::block: return block_view(x, a);
    case Strategy::tensor_group:
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

torch::Tensor effective_scale(const QParams& qp) {
  return qp.global_scale.defined() ? qp.scale / qp.global_scale : qp.scale;
}

torch::Tensor dequantization_scale(const QParams& qp) {
  return qp.dequant_scale.defined() ? qp.dequant_scale : effective_scale(qp);
}

torch::Tensor global_scale_of(const torch::Tensor& x) {
  return nvfp4_global_scale(x.detach().abs().max().to(torch::kFloat32));
}

torch::Tensor round_scale(const torch::Tensor& scale, const QuantArgs& a, torch::ScalarType scale_dtype) {
  // Within E4M3's positive range: from its smallest subnormal, 2^-9 (a learned scale that
  // rounded to 0 would divide by zero), to 448.
  if (a.has_global_scale()) return round_to_fp8_e4m3(scale.clamp(std::ldexp(1.0, -9), kFp8E4M3Max));
  QT_REQUIRE(!a.has_power_of_two_scales(), "power-of-two (E8M0) scales are not learned");
  return scale.to(scale_dtype).to(torch::kFloat32);
}

namespace {

// E2M1's scales from each unit's absmax: NVFP4's E4M3 group scales under the global scale,
// or MXFP4's powers of two (quant/fp4.h).
QParams fp4_qparams(const torch::Tensor& absmax, const QuantArgs& a, const torch::Tensor& global_scale) {
  QParams qp;
  if (a.has_power_of_two_scales()) {
    qp.scale = mxfp4_scales(mxfp4_scale_exponents(absmax));
  } else {
    QT_REQUIRE(a.has_global_scale() && global_scale.defined(), "NVFP4 group scales need the global scale");
    qp.global_scale = global_scale.to(absmax.device(), torch::kFloat32).reshape({1});
    qp.scale = nvfp4_group_scales(absmax, qp.global_scale);
  }
  qp.zero_point = torch::zeros_like(qp.scale);
  return qp;
}

}  // namespace

QParams qparams_from_minmax(const torch::Tensor& min_vals, const torch::Tensor& max_vals, const QuantArgs& a,
                            torch::ScalarType scale_dtype, const torch::Tensor& global_scale) {
  auto lo = torch::minimum(min_vals.to(torch::kFloat32), torch::zeros_like(min_vals, torch::kFloat32));
  auto hi = torch::maximum(max_vals.to(torch::kFloat32), torch::zeros_like(max_vals, torch::kFloat32));
  if (a.is_fp4()) {
    QT_REQUIRE(a.symmetric, "FP4 is symmetric");
    return fp4_qparams(torch::maximum(lo.abs(), hi.abs()), a, global_scale);
  }
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

namespace {

QParams data_qparams(const torch::Tensor& x, const QuantArgs& a, torch::ScalarType scale_dtype,
                     const torch::Tensor& global_scale) {
  auto view = unit_view(x.detach(), a);
  if (a.is_fp4()) {
    const auto global = a.has_global_scale() && !global_scale.defined() ? global_scale_of(x) : global_scale;
    return fp4_qparams(std::get<0>(view.abs().max(/*dim=*/-1, /*keepdim=*/true)).to(torch::kFloat32), a, global);
  }
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

}  // namespace

QParams with_engine_scales(QParams qp, const QuantArgs& a, int64_t rows) {
  if (a.fp8_group_scales) qp.dequant_scale = w4a8_fp8_engine_scales(qp.scale.detach().reshape({rows, -1})).reshape({-1, 1});
  return qp;
}

QParams compute_qparams(const torch::Tensor& x, const QuantArgs& a, torch::ScalarType scale_dtype,
                        const torch::Tensor& global_scale) {
  auto qp = data_qparams(x, a, scale_dtype, global_scale);
  return a.fp8_group_scales ? with_engine_scales(std::move(qp), a, x.size(0)) : qp;
}

torch::Tensor quantize(const torch::Tensor& view, const QParams& qp, const QuantArgs& a) {
  auto v = view.to(torch::kFloat32) / effective_scale(qp) + qp.zero_point;
  return round_to_grid(v.clamp(grid_min(a), grid_max(a)), grid_of(a));
}

torch::Tensor dequantize(const torch::Tensor& q, const QParams& qp) { return (q - qp.zero_point) * dequantization_scale(qp); }

torch::Tensor fake_quantize_unfused(const torch::Tensor& x, const QParams& qp, const QuantArgs& a) {
  const auto view = unit_view(x, a).to(torch::kFloat32);
  // Every tensor argument defined (LibTorch 1.13's custom functions describe each input's
  // device): without engine scales, the grid values are multiplied back by the scale itself.
  const auto scale = effective_scale(qp);
  auto out = FakeQuantizeFunction::apply(view, scale, qp.zero_point, dequantization_scale(qp), grid_min(a), grid_max(a),
                                         grid_of(a));
  return from_unit_view(out, x.sizes(), a).to(x.scalar_type());
}

bool fused_fake_quant_allowed() { return fused_kernels_allowed(KernelFamily::fake_quant); }

namespace {

torch::Tensor fake_quantize_as(const torch::Tensor& x, const QParams& qp, const QuantArgs& a,
                               std::optional<torch::ScalarType> out_dtype) {
#if QTRAIN_WITH_CUDA
  if (x.is_cuda() && fused_fake_quant_allowed()) {
    const auto view = unit_view(x, a);
    const auto scale = effective_scale(qp);
    if (cuda::fused_fake_quantize_applies(view, scale, view.size(1)))
      return from_unit_view(cuda::fused_fake_quantize(view, scale, qp.zero_point, qp.dequant_scale, view.size(1),
                                                      grid_min(a), grid_max(a), static_cast<int>(grid_of(a)), out_dtype),
                            x.sizes(), a);
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
