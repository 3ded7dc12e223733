// Rule matching, fused-layer consistency, wrapping and calibration.
#include "quant/quantized_model.h"

#include <cstdio>
#include <regex>
#include <tuple>

#include "common/dist.h"
#include "common/error.h"
#include "quant/kv_cache_quant.h"

namespace qtrain::quant {

std::vector<QuantRule> parse_rules(const std::vector<std::string>& rules, const std::string& key) {
  std::vector<QuantRule> out;
  for (const auto& rule : rules) {
    const auto eq = rule.rfind('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == rule.size())
      throw Error("rule '" + rule + "' is not PATTERN=SCHEME").key(key).expected("e.g. re:.*mlp\\..*=w4a16-g128");
    const auto pattern = rule.substr(0, eq);
    if (pattern.rfind("re:", 0) == 0) {
      try {
        std::regex check(pattern.substr(3));
      } catch (const std::regex_error& e) {
        throw Error("bad regular expression in rule '" + rule + "': " + e.what()).key(key);
      }
    }
    try {
      out.push_back({pattern, preset_scheme(rule.substr(eq + 1))});
    } catch (const Error& e) {
      throw Error(std::string(e.reason()) + " in rule '" + rule + "'").key(key).expected(e.expected_value());
    }
  }
  return out;
}

bool pattern_matches(const std::string& pattern, const std::string& name) {
  if (pattern.rfind("re:", 0) != 0) return pattern == name;
  return std::regex_search(name, std::regex(pattern.substr(3)), std::regex_constants::match_continuous);
}

namespace {

// Layers that vLLM fuses into one GEMM: they must share a scheme.
std::string fused_group(const std::string& name) {
  for (const auto* member : {"q_proj", "k_proj", "v_proj"})
    if (name.size() > 6 && name.compare(name.size() - 6, 6, member) == 0) return name.substr(0, name.size() - 6) + "qkv";
  for (const auto* member : {"gate_proj", "up_proj"}) {
    const std::string m(member);
    if (name.size() > m.size() && name.compare(name.size() - m.size(), m.size(), m) == 0)
      return name.substr(0, name.size() - m.size()) + "gate_up";
  }
  for (const auto* member : {".w1", ".w3"})  // Mixtral's experts: w1 gate, w3 up
    if (name.size() > 3 && name.compare(name.size() - 3, 3, member) == 0) return name.substr(0, name.size() - 3) + ".w13";
  return name;
}

// A mixture of experts' router (Qwen3-MoE mlp.gate, Mixtral block_sparse_moe.gate): it stays
// in floating point unless a rule names it exactly (engines keep it unquantized).
bool is_router(const std::string& name) {
  for (const std::string suffix : {".mlp.gate", ".block_sparse_moe.gate"})
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) return true;
  return false;
}

FakeQuantLinear* fake_quant_layers_of(model::LinearImpl* linear) {
  return linear && linear->wrapper() ? dynamic_cast<FakeQuantLinear*>(linear->wrapper().get()) : nullptr;
}

}  // namespace

std::map<std::string, Scheme> assign_schemes(model::CausalLMImpl& model, const std::vector<QuantRule>& rules) {
  std::map<std::string, Scheme> assignment;
  std::map<std::string, std::pair<std::string, std::string>> group_scheme;  // group -> (scheme, first member)
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    if (!item.value()->as<model::LinearImpl>()) continue;
    const auto& name = item.key();
    Scheme scheme = preset_scheme("none");
    for (const auto& rule : rules)
      if (pattern_matches(rule.pattern, name) && (!is_router(name) || rule.pattern == name)) {
        scheme = rule.scheme;
        break;
      }
    const auto group = fused_group(name);
    const auto it = group_scheme.find(group);
    if (it == group_scheme.end()) group_scheme[group] = {scheme.name, name};
    else if (it->second.first != scheme.name)
      throw Error("'" + name + "' gets scheme " + scheme.name + " but '" + it->second.second + "' gets " +
                  it->second.first + "; inference engines fuse these layers into one GEMM")
          .key("quant.rules")
          .expected("one scheme for q_proj/k_proj/v_proj and one for gate_proj/up_proj of a layer");
    if (scheme.quantizes()) assignment[name] = scheme;
  }
  return assignment;
}

void attach_fake_quant(model::CausalLMImpl& model, const std::map<std::string, Scheme>& assignment,
                       const FakeQuantOptions& options) {
  for (const auto& item : model.named_modules("", false)) {
    auto* linear = item.value()->as<model::LinearImpl>();
    if (!linear) continue;
    const auto it = assignment.find(item.key());
    if (it == assignment.end()) continue;
    auto wrapper = std::make_shared<FakeQuantLinear>(it->second, options, linear->weight.detach());
    wrapper->to(linear->weight.device());
    linear->set_wrapper("quant", wrapper);
  }
  share_fused_global_scales(model);
}

void share_fused_global_scales(model::CausalLMImpl& model, bool restart_learned) {
  auto modules = model.named_modules("", false);
  std::map<std::string, std::vector<std::string>> groups;
  for (const auto& [name, layer] : fake_quant_layers(model)) groups[fused_group(name)].push_back(name);
  for (const auto& [group, names] : groups) {
    if (names.size() < 2) continue;
    for (const auto& name : names) {
      std::vector<model::LinearImpl*> others;
      for (const auto& other : names)
        if (other != name) others.push_back(modules[other]->as<model::LinearImpl>());
      auto* self = modules[name]->as<model::LinearImpl>();
      fake_quant_layers_of(self)->share_global_scale(*self, others, restart_learned);
    }
  }
}

std::map<std::string, FakeQuantLinear*> fake_quant_layers(model::CausalLMImpl& model) {
  std::map<std::string, FakeQuantLinear*> out;
  for (const auto& item : model.named_modules("", false)) {
    auto* linear = item.value()->as<model::LinearImpl>();
    if (!linear) continue;
    if (auto* fq = fake_quant_layers_of(linear)) out[item.key()] = fq;
  }
  return out;
}

std::vector<TensorQuantizer*> activation_quantizers(model::CausalLMImpl& model) {
  std::vector<TensorQuantizer*> out;
  for (auto& [name, layer] : fake_quant_layers(model)) out.push_back(&layer->inputs());
  for (auto* kv : kv_cache_quantizers(model)) {
    out.push_back(&kv->keys());
    out.push_back(&kv->values());
  }
  return out;
}

namespace {

// A linear of a mixture's expert, "<prefix>experts.<e>.<linear>": the prefix and the linear
// (empty when `name` is not one).
std::pair<std::string, std::string> expert_parts(const std::string& name) {
  const auto at = name.rfind(".experts.");
  if (at == std::string::npos) return {};
  const auto begin = at + 9, end = name.find('.', begin);
  if (end == std::string::npos) return {};
  return {name.substr(0, begin), name.substr(end)};
}

// An observed quantizer that no calibration token reached on any rank. An expert's input
// takes over the statistics of the same linear of the widest sibling expert that saw
// tokens (the scale a token routed to it at inference most likely fits), with a warning;
// anything else has no range to go by.
void calibrate_unseen(const std::string& name, TensorQuantizer& q,
                      const std::vector<std::tuple<std::string, TensorQuantizer*, std::function<void()>>>& observed) {
  const auto [prefix, linear] = expert_parts(name);
  TensorQuantizer* widest = nullptr;
  std::string widest_name;
  if (!prefix.empty())
    for (const auto& [other, quantizer, freeze] : observed) {
      const auto parts = expert_parts(other);
      if (parts.first != prefix || parts.second != linear || !quantizer->observed_any()) continue;
      if (!widest || quantizer->observed_absmax() > widest->observed_absmax()) {
        widest = quantizer;
        widest_name = other;
      }
    }
  if (!widest)
    throw Error("'" + name + "' saw no calibration tokens, so its static activation scale has no range" +
                (prefix.empty() ? "" : " (nor did any other expert's " + linear.substr(1) + " of its layer)"))
        .key("quant.calibration_sequences")
        .expected("more calibration sequences, or dynamic activation quantization for it");
  if (dist::is_main())
    std::fprintf(stderr,
                 "qtrain: warning: no calibration token was routed to '%s'; its static input scale is that of "
                 "'%s', the widest of its layer's experts (more quant.calibration_sequences reach more experts)\n",
                 name.c_str(), widest_name.c_str());
  q.adopt_observations(*widest);
}

}  // namespace

void calibrate_activations(model::CausalLMImpl& model, const std::function<void()>& run_batches) {
  // Every observed quantizer, in the same order on every rank (linears by name, then the KV
  // cache by layer), with what freezes it: a linear's freeze also bumps its scale_version.
  std::vector<std::tuple<std::string, TensorQuantizer*, std::function<void()>>> observed;
  for (auto& [name, layer] : fake_quant_layers(model))
    if (layer->inputs().needs_calibration())
      observed.emplace_back(name, &layer->inputs(), [layer = layer] { layer->freeze(); });
  int kv_layer = 0;
  for (auto* kv : kv_cache_quantizers(model)) {
    for (auto* q : {&kv->keys(), &kv->values()})
      if (q->needs_calibration())
        observed.emplace_back("the KV cache of layer " + std::to_string(kv_layer), q, [q] { q->freeze(); });
    ++kv_layer;
  }
  int passes = 0;
  for (const auto& [name, q, freeze] : observed) passes = std::max(passes, q->calibration_passes());
  for (int pass = 0; pass < passes; ++pass) {
    for (auto& [name, q, freeze] : observed)
      if (pass < q->calibration_passes()) q->begin_pass(pass);
    {
      torch::NoGradGuard no_grad;
      run_batches();
    }
    for (auto& [name, q, freeze] : observed)
      if (pass < q->calibration_passes()) q->end_pass();
    // A quantizer freezes after its last pass, so that later passes see it quantized, as
    // inference will; one that saw nothing first takes a sibling's statistics.
    for (auto& [name, q, freeze] : observed)
      if (pass == q->calibration_passes() - 1) {
        if (!q->observed_any()) calibrate_unseen(name, *q, observed);
        freeze();
      }
  }
}

}  // namespace qtrain::quant
