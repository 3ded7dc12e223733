// GPTQ column loop, Hessian collection and the layer-sequential driver.
#include "quant/gptq.h"

#include <cstdio>
#include <map>
#include <regex>

#include "common/dist.h"
#include "common/error.h"
#include "quant/quantized_model.h"

namespace qtrain::quant {

namespace {

// Sums a tensor over all ranks through the host (Hessians are small next to the model).
void allreduce_host(torch::Tensor& t) {
  if (dist::world_size() == 1) return;
  auto host = t.to(torch::kCPU, torch::kFloat64).contiguous();
  dist::allreduce_sum(host.data_ptr<double>(), static_cast<int>(host.numel()));
  t.copy_(host);
}

// The scales of one group of columns, one per row: FP4 keeps its (tensor_)group args over
// exactly one group's columns; the others take each row's min-max.
QParams column_qparams(const torch::Tensor& columns, const QuantArgs& args, torch::ScalarType scale_dtype,
                       const torch::Tensor& global_scale) {
  QuantArgs per_row = args;
  if (!args.is_fp4()) per_row.strategy = Strategy::channel;
  return compute_qparams(columns, per_row, scale_dtype, global_scale);  // [out, 1]
}

// Static scales of the whole weight as [rows, column groups]: a block's scale repeated over
// its rows.
QParams static_qparams(const torch::Tensor& W, const QuantArgs& args, torch::ScalarType scale_dtype,
                       const torch::Tensor& global_scale, int64_t groups) {
  auto qp = compute_qparams(W, args, scale_dtype, global_scale);
  const auto rows = W.size(0);
  const auto per_row = [&](const torch::Tensor& t) {
    if (!t.defined()) return t;
    if (args.strategy != Strategy::block) return t.numel() == 1 ? t.reshape({1, 1}).expand({rows, groups}) : t.reshape({rows, groups});
    return t.reshape({-1, groups}).repeat_interleave(args.block_rows, 0).narrow(0, 0, rows);
  };
  return {per_row(qp.scale), per_row(qp.zero_point), qp.global_scale, per_row(qp.dequant_scale)};
}

}  // namespace

GptqResult gptq_quantize(const torch::Tensor& weight, const torch::Tensor& hessian, const QuantArgs& args,
                         const GptqOptions& options, torch::ScalarType scale_dtype, const torch::Tensor& global_scale) {
  torch::NoGradGuard no_grad;
  QT_REQUIRE(!args.has_global_scale() || global_scale.defined(), "GPTQ on NVFP4 needs the global scale");
  auto W = weight.detach().to(torch::kFloat32).clone();
  auto H = hessian.detach().to(torch::kFloat32).clone();
  const int64_t rows = W.size(0), cols = W.size(1);
  const bool blocks = args.strategy == Strategy::block;
  const bool grouped = args.strategy == Strategy::group || args.strategy == Strategy::tensor_group || blocks;
  const int64_t group = blocks ? args.block_cols : grouped ? args.group_size : cols;
  const int64_t groups = (cols + group - 1) / group;
  auto dead = H.diagonal() == 0;
  H.diagonal().masked_fill_(dead, 1.0);
  W.masked_fill_(dead.unsqueeze(0), 0.0);
  // Scales: per row from the original weight, or per group.
  torch::Tensor scales = torch::zeros({rows, groups}, W.options()), zeros = torch::zeros({rows, groups}, W.options());
  torch::Tensor dequant_scales;  // w4afp8: the engine's
  const bool static_groups = !grouped || options.act_order || blocks || args.fp8_group_scales;
  if (static_groups) {
    auto qp = static_qparams(W, args, scale_dtype, global_scale, groups);
    scales.copy_(qp.scale);
    zeros.copy_(qp.zero_point);
    dequant_scales = qp.dequant_scale;
  }
  auto perm = options.act_order ? torch::argsort(H.diagonal(), /*dim=*/0, /*descending=*/true)
                                : torch::arange(cols, torch::TensorOptions().dtype(torch::kInt64).device(W.device()));
  W = W.index_select(1, perm);
  H = H.index_select(0, perm).index_select(1, perm);
  H.diagonal().add_(options.dampening * H.diagonal().mean().item<double>());
  auto L = torch::linalg_cholesky(H);
  auto Hinv = torch::linalg_cholesky(torch::cholesky_inverse(L), /*upper=*/true);
  const auto perm_host = perm.cpu();
  const auto* order = perm_host.data_ptr<int64_t>();
  auto Q = torch::zeros_like(W);
  // Blocks hold whole groups when groups are taken as they start.
  int64_t block = std::max<int64_t>(1, options.block_size);
  if (!static_groups) block = (block + group - 1) / group * group;
  for (int64_t i1 = 0; i1 < cols; i1 += block) {
    const int64_t i2 = std::min(i1 + block, cols), count = i2 - i1;
    auto W1 = W.narrow(1, i1, count).clone();
    auto Q1 = torch::zeros_like(W1), Err1 = torch::zeros_like(W1);
    auto Hinv1 = Hinv.narrow(0, i1, count).narrow(1, i1, count);
    for (int64_t i = 0; i < count; ++i) {
      const int64_t g = order[i1 + i] / group;
      if (!static_groups && (i1 + i) % group == 0) {
        auto qp = column_qparams(W1.narrow(1, i, group), args, scale_dtype, global_scale);
        scales.narrow(1, g, 1).copy_(qp.scale);
        zeros.narrow(1, g, 1).copy_(qp.zero_point);
      }
      const QParams qp{scales.narrow(1, g, 1), zeros.narrow(1, g, 1), global_scale,
                       dequant_scales.defined() ? dequant_scales.narrow(1, g, 1) : torch::Tensor()};
      auto w = W1.narrow(1, i, 1);
      const auto grid = quantize(w, qp, args);
      auto q = dequantize(grid, qp);  // what the engine computes with: the error to spread
      // Kept on the grid of the quantizing scale, from which fake quantization finds the
      // same grid values again (w4afp8 dequantizes with other, re-encoded scales).
      Q1.narrow(1, i, 1).copy_(qp.dequant_scale.defined() ? dequantize(grid, {qp.scale, qp.zero_point, qp.global_scale}) : q);
      auto err = (w - q) / Hinv1[i][i];
      W1.narrow(1, i, count - i).sub_(err.matmul(Hinv1.narrow(0, i, 1).narrow(1, i, count - i)));
      Err1.narrow(1, i, 1).copy_(err);
    }
    Q.narrow(1, i1, count).copy_(Q1);
    if (i2 < cols) W.narrow(1, i2, cols - i2).sub_(Err1.matmul(Hinv.narrow(0, i1, count).narrow(1, i2, cols - i2)));
  }
  GptqResult r;
  r.weight = Q.index_select(1, torch::argsort(perm)).to(weight.scalar_type());
  r.qparams = {scales.reshape({-1, 1}), zeros.reshape({-1, 1}), global_scale};
  if (args.strategy == Strategy::tensor) r.qparams = {scales.narrow(0, 0, 1).reshape({1, 1}), zeros.narrow(0, 0, 1).reshape({1, 1})};
  if (blocks) {  // one row per block of rows
    const auto first_rows = torch::arange(0, rows, args.block_rows, torch::TensorOptions().dtype(torch::kInt64).device(W.device()));
    r.qparams = {scales.index_select(0, first_rows).reshape({-1, 1}), zeros.index_select(0, first_rows).reshape({-1, 1})};
  }
  return r;
}

GptqSummary run_gptq(model::CausalLMImpl& model, const GptqOptions& options, const std::function<void()>& run_batches,
                     const std::function<std::shared_ptr<void>(int)>& hold) {
  GptqSummary summary;
  auto layers = fake_quant_layers(model);
  static const std::regex layer_index(R"(^model\.layers\.(\d+)\.)");
  std::map<int64_t, std::vector<std::string>> by_layer;  // decoder layer -> linears (lm_head: -1 -> last)
  for (const auto& [name, layer] : layers) {
    if (!layer->scheme().weights) continue;
    std::smatch m;
    by_layer[std::regex_search(name, m, layer_index) ? std::stoll(m[1]) : INT64_MAX].push_back(name);
  }
  auto modules = model.named_modules("", false);
  for (const auto& [index, names] : by_layer) {
    std::map<std::string, torch::Tensor> hessians;
    std::map<std::string, int64_t> counts;
    {  // the watch ends before the layer is quantized
      model::ObserveInputs observe;
      for (const auto& name : names) {
        auto* linear = modules[name]->as<model::LinearImpl>();
        hessians[name] = torch::zeros({linear->weight.size(1), linear->weight.size(1)},
                                      linear->weight.options().dtype(torch::kFloat32));
        counts[name] = 0;
        observe.watch(*linear, [&, name](const torch::Tensor& x) {
          auto x2 = x.detach().reshape({-1, x.size(-1)}).to(torch::kFloat32);
          hessians[name].addmm_(x2.t(), x2);
          counts[name] += x2.size(0);
        });
      }
      run_batches();
    }
    const auto held = hold ? hold(index == INT64_MAX ? -1 : static_cast<int>(index)) : nullptr;
    // NVFP4's global scales, of each fused group, before any weight of the layer changes.
    std::map<std::string, torch::Tensor> globals;
    for (const auto& name : names)
      globals[name] = layers[name]->weights().global_scale_for(modules[name]->as<model::LinearImpl>()->weight);
    for (const auto& name : names) {
      auto& H = hessians[name];
      allreduce_host(H);
      double n = static_cast<double>(counts[name]);
      dist::allreduce_sum(&n, 1);
      auto* linear = modules[name]->as<model::LinearImpl>();
      summary.tokens[name] = static_cast<int64_t>(n);
      if (n < static_cast<double>(linear->weight.size(1))) {
        summary.round_to_nearest.push_back(name);
        if (dist::is_main())
          std::fprintf(stderr,
                       "qtrain: warning: GPTQ: %s saw %lld calibration tokens, fewer than its %lld input columns; it keeps "
                       "round-to-nearest scales (more quant.calibration_sequences route more tokens to it)\n",
                       name.c_str(), static_cast<long long>(n), static_cast<long long>(linear->weight.size(1)));
        continue;
      }
      H.mul_(2.0 / n);
      auto* fq = layers[name];
      auto result = gptq_quantize(linear->weight, H, *fq->scheme().weights, options, fq->scale_dtype(), globals[name]);
      torch::NoGradGuard no_grad;
      linear->weight.copy_(result.weight);
      fq->weights().set(result.qparams);
    }
  }
  return summary;
}

}  // namespace qtrain::quant
