// Autograd wrapper of the fused fake-quant kernels: saves x alone for backward (the unfused
// form keeps x / scale, the rounded values and a mask, all fp32).
#include "quant/cuda/fused_fake_quant.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "quant/cuda/fake_quant_kernel.h"
#include "quant/cuda/qparams_kernel.h"

namespace qtrain::quant::cuda {

namespace {

ElementType element_type(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return ElementType::float32;
    case torch::kFloat16: return ElementType::float16;
    default: return ElementType::bfloat16;
  }
}

FakeQuantLaunch describe(const torch::Tensor& x, torch::ScalarType out_dtype, const torch::Tensor& scale,
                         const torch::Tensor& zero_point, const torch::Tensor& dequant_scale, int64_t unit_len,
                         double qmin, double qmax, int grid) {
  const auto* props = at::cuda::getCurrentDeviceProperties();
  return {element_type(x.scalar_type()),
          element_type(out_dtype),
          x.numel(),
          unit_len,
          scale.data_ptr<float>(),
          zero_point.data_ptr<float>(),
          dequant_scale.defined() ? dequant_scale.data_ptr<float>() : nullptr,
          static_cast<float>(qmin),
          static_cast<float>(qmax),
          static_cast<ValueGrid>(grid),
          props->multiProcessorCount * 8,
          at::cuda::getCurrentCUDAStream().stream()};
}

class FusedFakeQuantizeFunction : public torch::autograd::Function<FusedFakeQuantizeFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& scale, const torch::Tensor& zero_point,
                               const torch::Tensor& dequant_scale, int64_t unit_len, double qmin, double qmax,
                               int64_t grid, torch::ScalarType out_dtype) {
    const c10::cuda::CUDAGuard guard(x.device());
    auto out = torch::empty(x.sizes(), x.options().dtype(out_dtype));
    fake_quant_forward(describe(x, out_dtype, scale, zero_point, dequant_scale, unit_len, qmin, qmax, static_cast<int>(grid)), x.data_ptr(),
                       out.data_ptr());
    ctx->save_for_backward({x, scale, zero_point});
    ctx->saved_data["out_dtype"] = static_cast<int64_t>(out_dtype);
    ctx->saved_data["unit_len"] = unit_len;
    ctx->saved_data["qmin"] = qmin;
    ctx->saved_data["qmax"] = qmax;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const c10::cuda::CUDAGuard guard(x.device());
    const auto out_dtype = static_cast<torch::ScalarType>(ctx->saved_data["out_dtype"].toInt());
    const auto grad_out = grads[0].to(out_dtype).contiguous();
    auto grad_x = torch::empty_like(x);
    fake_quant_backward(describe(x, out_dtype, saved[1], saved[2], torch::Tensor(), ctx->saved_data["unit_len"].toInt(),
                                 ctx->saved_data["qmin"].toDouble(), ctx->saved_data["qmax"].toDouble(), 0),
                        x.data_ptr(), grad_out.data_ptr(), grad_x.data_ptr());
    return {grad_x,          torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(),
            torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

bool fused_fake_quantize_applies(const torch::Tensor& x, const torch::Tensor& scale, int64_t unit_len) {
  const auto t = x.scalar_type();
  return x.is_cuda() && (t == torch::kFloat32 || t == torch::kFloat16 || t == torch::kBFloat16) &&
         !scale.requires_grad() && unit_len > 0 && x.numel() % unit_len == 0 &&
         scale.numel() == x.numel() / unit_len;
}

torch::Tensor fused_fake_quantize(const torch::Tensor& x, const torch::Tensor& scale, const torch::Tensor& zero_point,
                                  const torch::Tensor& dequant_scale, int64_t unit_len, double qmin, double qmax, int grid,
                                  std::optional<torch::ScalarType> out_dtype) {
  auto as_float = [&](const torch::Tensor& t) { return t.detach().to(x.device(), torch::kFloat32).contiguous(); };
  const auto out = out_dtype.value_or(x.scalar_type());
  TORCH_CHECK(out == x.scalar_type() || x.scalar_type() == torch::kFloat32,
              "fused fake quant narrows only fp32 inputs");
  // An undefined tensor cannot enter a custom function: without engine scales the scale
  // itself is passed (the kernel multiplies by it either way).
  const auto s = as_float(scale);
  return FusedFakeQuantizeFunction::apply(x.contiguous(), s, as_float(zero_point),
                                          dequant_scale.defined() ? as_float(dequant_scale) : s, unit_len, qmin, qmax,
                                          static_cast<int64_t>(grid), out);
}

bool fused_minmax_qparams_applies(const torch::Tensor& view) {
  const auto t = view.scalar_type();
  return view.is_cuda() && view.dim() == 2 && view.size(0) >= kFusedQParamsMinUnits &&
         (t == torch::kFloat32 || t == torch::kFloat16 || t == torch::kBFloat16);
}

std::pair<torch::Tensor, torch::Tensor> fused_minmax_qparams(const torch::Tensor& view, double qmin, double qmax,
                                                             bool symmetric, torch::ScalarType scale_dtype) {
  const c10::cuda::CUDAGuard guard(view.device());
  const auto x = view.contiguous();
  const auto units = x.size(0);
  auto scale = torch::empty({units, 1}, x.options().dtype(torch::kFloat32));
  auto zero_point = torch::empty({units, 1}, x.options().dtype(torch::kFloat32));
  // The storage dtype's epsilon, as qparams_from_minmax uses it for a unit of zeros.
  const auto storage = scale_dtype == torch::kFloat32 ? ScaleStorage::float32
                       : scale_dtype == torch::kFloat16 ? ScaleStorage::float16
                                                         : ScaleStorage::bfloat16;
  const float epsilon = storage == ScaleStorage::float32   ? 1.1920928955078125e-07f
                        : storage == ScaleStorage::float16 ? 0.0009765625f
                                                           : 0.0078125f;
  minmax_qparams({element_type(x.scalar_type()), units, x.size(1), static_cast<float>(qmin), static_cast<float>(qmax),
                  symmetric, storage, epsilon, at::cuda::getCurrentCUDAStream().stream()},
                 x.data_ptr(), scale.data_ptr<float>(), zero_point.data_ptr<float>());
  return {scale, zero_point};
}

}  // namespace qtrain::quant::cuda
