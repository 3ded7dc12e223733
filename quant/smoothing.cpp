// Smoothing pairs of the decoder: norm -> q/k/v, norm -> gate/up, up -> down.
#include "quant/smoothing.h"

#include "common/dist.h"
#include "quant/quantized_model.h"

namespace qtrain::quant {

namespace {

FakeQuantLinear* quantizer_of(model::LinearImpl& linear) {
  auto* fq = dynamic_cast<FakeQuantLinear*>(linear.wrapper().get());
  return fq && fq->scheme().weights ? fq : nullptr;
}

void add_pair(std::vector<SmoothingPair>& out, const std::string& name, torch::Tensor weight, torch::Tensor bias,
              std::vector<model::LinearImpl*> consumers) {
  SmoothingPair pair{name, std::move(weight), std::move(bias), std::move(consumers), {}};
  for (auto* c : pair.consumers) {
    auto* fq = quantizer_of(*c);
    if (!fq) return;  // smoothing helps only when every consumer is quantized
    pair.quantizers.push_back(fq);
  }
  out.push_back(std::move(pair));
}

}  // namespace

std::vector<SmoothingPair> smoothing_pairs(model::CausalLMImpl& model) {
  std::vector<SmoothingPair> pairs;
  int64_t index = 0;
  for (const auto& item : *model.model->layers) {
    auto* layer = item->as<model::DecoderLayerImpl>();
    const std::string prefix = "model.layers." + std::to_string(index++) + ".";
    auto& attn = *layer->self_attn;
    add_pair(pairs, prefix + "input_layernorm", layer->input_layernorm->weight, {},
             {attn.q_proj.get(), attn.k_proj.get(), attn.v_proj.get()});
    // A sparse MLP's norm feeds the router and every expert: not smoothed (yet).
    if (!layer->mlp) continue;
    auto& mlp = *layer->mlp;
    add_pair(pairs, prefix + "post_attention_layernorm", layer->post_attention_layernorm->weight, {},
             {mlp.gate_proj.get(), mlp.up_proj.get()});
    add_pair(pairs, prefix + "mlp.up_proj", mlp.up_proj->weight, mlp.up_proj->bias, {mlp.down_proj.get()});
  }
  return pairs;
}

void apply_smoothing(SmoothingPair& pair, const torch::Tensor& s) {
  torch::NoGradGuard no_grad;
  const auto scale = s.to(pair.producer_weight.device(), torch::kFloat32);
  if (pair.producer_weight.dim() == 1) pair.producer_weight.div_(scale.to(pair.producer_weight.scalar_type()));
  else pair.producer_weight.div_(scale.unsqueeze(1).to(pair.producer_weight.scalar_type()));
  if (pair.producer_bias.defined()) pair.producer_bias.div_(scale.to(pair.producer_bias.scalar_type()));
  for (auto* c : pair.consumers) c->weight.mul_(scale.unsqueeze(0).to(c->weight.scalar_type()));
}

std::vector<ChannelStatistics> collect_channel_statistics(std::vector<SmoothingPair>& pairs,
                                                          const std::function<void()>& run_batches,
                                                          int64_t sample_rows) {
  std::vector<ChannelStatistics> stats(pairs.size());
  std::vector<double> rows(pairs.size(), 0.0);
  {  // the watch ends before the reductions
    model::ObserveInputs observe;
    for (size_t i = 0; i < pairs.size(); ++i) {
      const auto channels = pairs[i].consumers.front()->weight.size(1);
      const auto options = pairs[i].consumers.front()->weight.options().dtype(torch::kFloat32);
      stats[i] = {torch::zeros({channels}, options), torch::zeros({channels}, options), torch::Tensor()};
      observe.watch(*pairs[i].consumers.front(), [&, i](const torch::Tensor& x) {
        auto x2 = x.detach().reshape({-1, x.size(-1)}).to(torch::kFloat32);
        stats[i].absmax = torch::maximum(stats[i].absmax, std::get<0>(x2.abs().max(0)));
        stats[i].absmean.add_(x2.abs().sum(0));
        rows[i] += static_cast<double>(x2.size(0));
        const auto have = stats[i].sample.defined() ? stats[i].sample.size(0) : 0;
        if (have < sample_rows) {
          auto take = x2.narrow(0, 0, std::min<int64_t>(sample_rows - have, x2.size(0)));
          stats[i].sample = have ? torch::cat({stats[i].sample, take}) : take.clone();
        }
      });
    }
    run_batches();
  }
  for (size_t i = 0; i < pairs.size(); ++i) {
    auto absmax = stats[i].absmax.to(torch::kCPU, torch::kFloat64).contiguous();
    auto absmean = stats[i].absmean.to(torch::kCPU, torch::kFloat64).contiguous();
    dist::allreduce_max(absmax.data_ptr<double>(), static_cast<int>(absmax.numel()));
    dist::allreduce_sum(absmean.data_ptr<double>(), static_cast<int>(absmean.numel()));
    dist::allreduce_sum(&rows[i], 1);
    stats[i].absmax = absmax.to(stats[i].absmax.options());
    stats[i].absmean = (absmean / std::max(rows[i], 1.0)).to(stats[i].absmean.options());
  }
  return stats;
}

}  // namespace qtrain::quant
