// Autograd functions around the decoder's fused kernels: what each saves for backward and
// which dtypes it takes.
#include "model/cuda/fused_layers.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>


#include "common/kernels.h"
#include "model/cuda/kernels.h"

namespace qtrain::model::cuda {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

bool floating(torch::ScalarType t) { return t == torch::kFloat32 || t == torch::kFloat16 || t == torch::kBFloat16; }

DType dtype_of(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return DType::float32;
    case torch::kFloat16: return DType::float16;
    default: return DType::bfloat16;
  }
}

// The (input, parameter) dtype pairs the kernels are built for: one dtype, or a narrow
// input with fp32 parameters.
bool supported_pair(torch::ScalarType input, torch::ScalarType other) {
  return floating(input) && floating(other) && (input == other || other == torch::kFloat32);
}

void* stream() { return at::cuda::getCurrentCUDAStream().stream(); }

class RmsNormFunction : public torch::autograd::Function<RmsNormFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight, double eps) {
    const c10::cuda::CUDAGuard guard(x.device());
    const auto hidden = x.size(-1);
    const auto rows2d = x.reshape({-1, hidden}).contiguous();
    const auto w = weight.contiguous();
    const auto out_dtype = c10::promoteTypes(x.scalar_type(), weight.scalar_type());
    auto out = torch::empty(rows2d.sizes(), rows2d.options().dtype(out_dtype));
    auto rstd = torch::empty({rows2d.size(0)}, rows2d.options().dtype(torch::kFloat32));
    const RmsNormLaunch l{dtype_of(x.scalar_type()), dtype_of(weight.scalar_type()), dtype_of(out_dtype),
                          rows2d.size(0), hidden, static_cast<float>(eps), stream()};
    rms_norm_forward(l, rows2d.data_ptr(), w.data_ptr(), out.data_ptr(), rstd.data_ptr<float>());
    ctx->save_for_backward({rows2d, w, rstd});
    ctx->saved_data["eps"] = eps;
    return out.view(x.sizes());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &w = saved[1], &rstd = saved[2];
    const c10::cuda::CUDAGuard guard(x.device());
    const auto out_dtype = c10::promoteTypes(x.scalar_type(), w.scalar_type());
    const auto g = grads[0].reshape(x.sizes()).to(out_dtype).contiguous();
    auto grad_x = torch::empty_like(x);
    auto partial = torch::empty({rms_norm_weight_tiles(x.size(0)), x.size(1)}, x.options().dtype(torch::kFloat32));
    const RmsNormLaunch l{dtype_of(x.scalar_type()), dtype_of(w.scalar_type()), dtype_of(out_dtype), x.size(0),
                          x.size(1), static_cast<float>(ctx->saved_data["eps"].toDouble()), stream()};
    rms_norm_backward(l, g.data_ptr(), x.data_ptr(), w.data_ptr(), rstd.data_ptr<float>(), grad_x.data_ptr(),
                      partial.data_ptr<float>());
    const auto grad_w = partial.sum(0).to(w.scalar_type());
    return {grad_x.view(grads[0].sizes()), grad_w, torch::Tensor()};
  }
};

class SwigluFunction : public torch::autograd::Function<SwigluFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& gate, const torch::Tensor& up) {
    const c10::cuda::CUDAGuard guard(gate.device());
    const auto g = gate.contiguous(), u = up.contiguous();
    auto out = torch::empty_like(g);
    swiglu_forward(dtype_of(g.scalar_type()), g.numel(), g.data_ptr(), u.data_ptr(), out.data_ptr(), stream());
    ctx->save_for_backward({g, u});  // not silu(gate): recomputed in the backward pass
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &g = saved[0], &u = saved[1];
    const c10::cuda::CUDAGuard guard(g.device());
    const auto dy = grads[0].to(g.scalar_type()).contiguous();
    auto grad_gate = torch::empty_like(g), grad_up = torch::empty_like(u);
    swiglu_backward(dtype_of(g.scalar_type()), g.numel(), dy.data_ptr(), g.data_ptr(), u.data_ptr(),
                    grad_gate.data_ptr(), grad_up.data_ptr(), stream());
    return {grad_gate, grad_up};
  }
};

RotaryLaunch rotary_launch(const torch::Tensor& x, torch::ScalarType cs_dtype, torch::ScalarType out_dtype) {
  return {dtype_of(x.scalar_type()), dtype_of(cs_dtype), dtype_of(out_dtype), x.size(0), x.size(1), x.size(2), x.size(3),
          x.stride(0), x.stride(1), x.stride(2), stream()};
}

class RotaryFunction : public torch::autograd::Function<RotaryFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& cos,
                               const torch::Tensor& sin) {
    const c10::cuda::CUDAGuard guard(x.device());
    const auto c = cos.contiguous(), s = sin.contiguous();
    const auto out_dtype = c10::promoteTypes(x.scalar_type(), cos.scalar_type());
    auto out = torch::empty(x.sizes(), x.options().dtype(out_dtype).memory_format(torch::MemoryFormat::Contiguous));
    rotary_forward(rotary_launch(x, c.scalar_type(), out_dtype), x.data_ptr(), c.data_ptr(), s.data_ptr(),
                   out.data_ptr());
    ctx->save_for_backward({c, s});
    ctx->saved_data["x_dtype"] = static_cast<int64_t>(x.scalar_type());
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &c = saved[0], &s = saved[1];
    const auto x_dtype = static_cast<torch::ScalarType>(ctx->saved_data["x_dtype"].toInt());
    const auto out_dtype = c10::promoteTypes(x_dtype, c.scalar_type());
    const c10::cuda::CUDAGuard guard(c.device());
    const auto g = grads[0].to(out_dtype).contiguous();
    auto grad_x = torch::empty(g.sizes(), g.options().dtype(x_dtype));
    rotary_backward(rotary_launch(grad_x, c.scalar_type(), out_dtype), g.data_ptr(), c.data_ptr(), s.data_ptr(),
                    grad_x.data_ptr());
    return {grad_x, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

bool fused_layers_allowed() { return fused_kernels_allowed(KernelFamily::model_layers); }

bool fused_rms_norm_applies(const torch::Tensor& x, const torch::Tensor& weight) {
  return x.is_cuda() && weight.is_cuda() && x.dim() >= 1 && weight.dim() == 1 && x.size(-1) == weight.size(0) &&
         supported_pair(x.scalar_type(), weight.scalar_type());
}

torch::Tensor fused_rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  return RmsNormFunction::apply(x, weight, eps);
}

bool fused_swiglu_applies(const torch::Tensor& gate, const torch::Tensor& up) {
  return gate.is_cuda() && up.is_cuda() && gate.sizes() == up.sizes() && gate.scalar_type() == up.scalar_type() &&
         floating(gate.scalar_type());
}

torch::Tensor fused_swiglu(const torch::Tensor& gate, const torch::Tensor& up) { return SwigluFunction::apply(gate, up); }

bool fused_rotary_applies(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  return x.is_cuda() && cos.is_cuda() && sin.is_cuda() && x.dim() == 4 && x.stride(3) == 1 && x.size(3) % 2 == 0 &&
         cos.dim() == 2 && cos.size(0) == x.size(2) && cos.size(1) == x.size(3) && sin.sizes() == cos.sizes() &&
         sin.scalar_type() == cos.scalar_type() && supported_pair(x.scalar_type(), cos.scalar_type());
}

torch::Tensor fused_rotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  return RotaryFunction::apply(x, cos, sin);
}

}  // namespace qtrain::model::cuda
