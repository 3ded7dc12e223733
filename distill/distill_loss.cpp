// One forward of teacher and student, and the weighted sum of the loss terms.
#include "distill/distill_loss.h"

#include "common/compat.h"
#include "common/error.h"
#include "distill/chunked_logit_loss.h"
#include "distill/kd_loss.h"
#include "model/moe.h"

namespace qtrain::distill {

HiddenProjectionsImpl::HiddenProjectionsImpl(const DistillOptions& options, int64_t student_width,
                                             int64_t teacher_width) {
  if (options.gamma == 0 || student_width == teacher_width) return;
  auto list = register_module("proj", torch::nn::ModuleList());
  for (size_t i = 0; i < options.student_layers.size(); ++i) {
    projections_.emplace_back(torch::nn::LinearOptions(student_width, teacher_width).bias(false));
    list->push_back(projections_.back());
  }
}

torch::Tensor HiddenProjectionsImpl::forward(size_t pair, const torch::Tensor& student_hidden) {
  return projections_.empty() ? student_hidden : projections_[pair](student_hidden);
}

DistillLoss::DistillLoss(DistillOptions options, model::CausalLM student, model::CausalLM teacher,
                         HiddenProjections projections, torch::ScalarType compute_dtype)
    : options_(std::move(options)),
      student_(std::move(student)),
      teacher_(std::move(teacher)),
      projections_(std::move(projections)),
      compute_dtype_(compute_dtype) {
  QT_REQUIRE(teacher_ || (options_.beta == 0 && options_.gamma == 0), "distillation terms need a teacher");
  if (options_.router_aux_loss > 0 && !student_->config().is_moe())
    throw Error("the load-balancing loss needs a mixture-of-experts student (this one is " + student_->config().model_type + ")")
        .key("distill.router_aux_loss")
        .expected("0 for a dense student");
  if (options_.gamma == 0) return;
  for (size_t i = 0; i < options_.student_layers.size(); ++i) {
    const auto s = options_.student_layers[i], t = options_.teacher_layers[i];
    if (s < 0 || s >= student_->config().num_hidden_layers)
      throw Error("student layer " + std::to_string(s) + " does not exist")
          .key("distill.student_layers")
          .expected("0 .. " + std::to_string(student_->config().num_hidden_layers - 1));
    if (t < 0 || t >= teacher_->config().num_hidden_layers)
      throw Error("teacher layer " + std::to_string(t) + " does not exist")
          .key("distill.teacher_layers")
          .expected("0 .. " + std::to_string(teacher_->config().num_hidden_layers - 1));
  }
}

namespace {

// An lm_head the chunked loss can compute itself: the tied embedding, or a linear without a
// wrapper (fake quantization, pruning) and without a bias.
bool plain_lm_head(const model::CausalLMImpl& m) {
  return !m.lm_head || (!m.lm_head->wrapper() && !m.lm_head->bias.defined());
}

}  // namespace

bool DistillLoss::chunked() const {
  if (options_.loss_chunk_tokens <= 0 || (options_.alpha == 0 && options_.beta == 0)) return false;
  return plain_lm_head(*student_) && (options_.beta == 0 || plain_lm_head(*teacher_));
}

LossTerms DistillLoss::compute(const torch::Tensor& input_ids, const torch::Tensor& labels) {
  const bool need_teacher = options_.beta > 0 || options_.gamma > 0;
  const bool need_layers = options_.gamma > 0;
  const bool chunked_logits = chunked();
  torch::Tensor teacher_hidden, teacher_logits;
  std::vector<torch::Tensor> teacher_layers;
  if (need_teacher) {
    torch::NoGradGuard no_grad;
    teacher_hidden = teacher_->hidden_states(input_ids, need_layers ? &teacher_layers : nullptr);
    if (options_.beta > 0 && !chunked_logits) teacher_logits = teacher_->logits(teacher_hidden);
  }
  const auto device = input_ids.device();
  compat::AutocastGuard autocast(device, compute_dtype_);
  std::vector<torch::Tensor> student_layers;
  std::vector<model::SparseMoeImpl*> sparse;  // the kept sparse layers (not pruned away)
  if (options_.router_aux_loss > 0)
    for (auto* layer : model::sparse_layers(*student_))
      if (!layer->dropped) sparse.push_back(layer);
  // The loss's gradient goes to the routers by hooks inside each layer's graph (model/moe.h),
  // filled in once the whole forward has routed; its value is added to the total detached.
  const auto balancing = sparse.empty() ? nullptr : std::make_shared<model::LoadBalancingGradient>();
  for (auto* layer : sparse) {
    layer->set_record_routing(true);
    layer->set_load_balancing_gradient(balancing);
  }
  auto student_hidden = student_->hidden_states(input_ids, need_layers ? &student_layers : nullptr);
  std::vector<model::Routing> routings;
  for (auto* layer : sparse) {
    routings.push_back(layer->last_routing());
    layer->set_record_routing(false);  // an activation-checkpointed re-run in backward records nothing
  }

  const auto zero = torch::zeros({}, torch::TensorOptions().device(device));
  LossTerms terms{zero, zero, zero, zero, zero};
  if (chunked_logits)
    logit_terms_chunked(student_hidden, teacher_hidden, labels, terms);
  else if (options_.alpha > 0 || options_.beta > 0)
    logit_terms_full(student_hidden, teacher_logits, labels, terms);
  if (need_layers) {
    auto sum = zero;
    for (size_t i = 0; i < options_.student_layers.size(); ++i)
      sum = sum + hidden_state_loss(projections_->forward(i, student_layers[options_.student_layers[i]]),
                                    teacher_layers[options_.teacher_layers[i]], options_.hidden_loss);
    terms.hidden = sum / static_cast<double>(options_.student_layers.size());
  }
  terms.total = terms.total + options_.gamma * terms.hidden;
  if (!routings.empty()) {
    // With pruned experts (prune.expert_sparsity), the count the model without them has.
    const auto& kept = sparse.front()->kept_experts();
    const int64_t experts = kept.defined() ? kept.sum().item<int64_t>() : student_->config().num_experts;
    {
      torch::NoGradGuard no_grad;
      terms.router = model::load_balancing_loss(routings, experts);
      balancing->per_expert = model::load_balancing_gradient(routings, experts);
    }
    // A zero that carries the term's weight in the backward: its hook runs first (a leaf's
    // gradient accumulation has the highest priority), before any layer's.
    auto carrier = torch::zeros({}, torch::TensorOptions().device(device).requires_grad(true));
    carrier.register_hook([balancing](torch::Tensor grad) {
      balancing->upstream = grad.item<double>();
      balancing->seeded = true;
      return grad;
    });
    terms.total = terms.total + options_.router_aux_loss * (terms.router + carrier);
  }
  return terms;
}

void DistillLoss::logit_terms_full(const torch::Tensor& student_hidden, const torch::Tensor& teacher_logits,
                                   const torch::Tensor& labels, LossTerms& terms) {
  auto student_logits = student_->logits(student_hidden);
  if (options_.alpha > 0) terms.ce = next_token_cross_entropy(student_logits, labels);
  if (options_.beta > 0) terms.kd = kd_kl_loss(student_logits, teacher_logits, options_.temperature);
  terms.total = options_.alpha * terms.ce + options_.beta * terms.kd;
}

void DistillLoss::logit_terms_chunked(const torch::Tensor& student_hidden, const torch::Tensor& teacher_hidden,
                                      const torch::Tensor& labels, LossTerms& terms) {
  const ChunkedLogitLossOptions o{options_.alpha, options_.beta, options_.temperature, options_.loss_chunk_tokens};
  torch::Tensor teacher_flat, teacher_weight;
  if (options_.beta > 0) {
    teacher_flat = teacher_hidden.reshape({-1, teacher_hidden.size(-1)});
    teacher_weight = teacher_->lm_head_weight();
  }
  auto out = chunked_logit_loss(student_hidden.reshape({-1, student_hidden.size(-1)}), student_->lm_head_weight(),
                                teacher_flat, teacher_weight, labels.reshape({-1}), o);
  terms.total = out.total;
  terms.ce = out.ce;
  terms.kd = out.kd;
}

}  // namespace qtrain::distill
