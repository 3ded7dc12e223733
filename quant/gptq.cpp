// GPTQ column loop, Hessian collection and the layer-sequential driver.
#include "quant/gptq.h"

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

QParams column_qparams(const torch::Tensor& columns, const QuantArgs& args, torch::ScalarType scale_dtype) {
  QuantArgs per_row = args;
  per_row.strategy = Strategy::channel;
  return compute_qparams(columns, per_row, scale_dtype);  // [out, 1]
}

}  // namespace

GptqResult gptq_quantize(const torch::Tensor& weight, const torch::Tensor& hessian, const QuantArgs& args,
                         const GptqOptions& options, torch::ScalarType scale_dtype) {
  torch::NoGradGuard no_grad;
  auto W = weight.detach().to(torch::kFloat32).clone();
  auto H = hessian.detach().to(torch::kFloat32).clone();
  const int64_t rows = W.size(0), cols = W.size(1);
  const bool grouped = args.strategy == Strategy::group;
  const int64_t group = grouped ? args.group_size : cols;
  const int64_t groups = cols / group;
  auto dead = H.diagonal() == 0;
  H.diagonal().masked_fill_(dead, 1.0);
  W.masked_fill_(dead.unsqueeze(0), 0.0);
  // Scales: per row from the original weight, or per group.
  torch::Tensor scales = torch::zeros({rows, groups}, W.options()), zeros = torch::zeros({rows, groups}, W.options());
  const bool static_groups = !grouped || options.act_order;
  if (static_groups) {
    auto qp = compute_qparams(W, args, scale_dtype);
    scales.copy_(qp.scale.reshape({rows, groups}));
    zeros.copy_(qp.zero_point.reshape({rows, groups}));
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
        auto qp = column_qparams(W1.narrow(1, i, group), args, scale_dtype);
        scales.narrow(1, g, 1).copy_(qp.scale);
        zeros.narrow(1, g, 1).copy_(qp.zero_point);
      }
      const QParams qp{scales.narrow(1, g, 1), zeros.narrow(1, g, 1)};
      auto w = W1.narrow(1, i, 1);
      auto q = dequantize(quantize(w, qp, args), qp);
      Q1.narrow(1, i, 1).copy_(q);
      auto err = (w - q) / Hinv1[i][i];
      W1.narrow(1, i, count - i).sub_(err.matmul(Hinv1.narrow(0, i, 1).narrow(1, i, count - i)));
      Err1.narrow(1, i, 1).copy_(err);
    }
    Q.narrow(1, i1, count).copy_(Q1);
    if (i2 < cols) W.narrow(1, i2, cols - i2).sub_(Err1.matmul(Hinv.narrow(0, i1, count).narrow(1, i2, cols - i2)));
  }
  GptqResult r;
  r.weight = Q.index_select(1, torch::argsort(perm)).to(weight.scalar_type());
  r.qparams = {scales.reshape({-1, 1}), zeros.reshape({-1, 1})};
  if (args.strategy == Strategy::tensor) r.qparams = {scales.narrow(0, 0, 1).reshape({1, 1}), zeros.narrow(0, 0, 1).reshape({1, 1})};
  return r;
}

void run_gptq(model::CausalLMImpl& model, const GptqOptions& options, const std::function<void()>& run_batches,
              const std::function<std::shared_ptr<void>(int)>& hold) {
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
    for (const auto& name : names) {
      auto& H = hessians[name];
      allreduce_host(H);
      double n = static_cast<double>(counts[name]);
      dist::allreduce_sum(&n, 1);
      QT_REQUIRE(n > 0, "GPTQ saw no calibration input for " + name);
      H.mul_(2.0 / n);
      auto* linear = modules[name]->as<model::LinearImpl>();
      auto* fq = layers[name];
      auto result = gptq_quantize(linear->weight, H, *fq->scheme().weights, options, fq->scale_dtype());
      torch::NoGradGuard no_grad;
      linear->weight.copy_(result.weight);
      fq->weights().set(result.qparams);
    }
  }
}

}  // namespace qtrain::quant
