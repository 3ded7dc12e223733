// Which linear layers of a model get which scheme, and putting fake quantization on them.
// Rules are "PATTERN=SCHEME" strings; the first rule whose pattern matches a layer's
// Hugging Face module name wins, unmatched layers stay in floating point. PATTERN is an
// exact name ("lm_head") or "re:" + a regular expression matched at the start of the name
// (as compressed-tensors / vLLM match: Python's re.match), e.g.
//   ["lm_head=none", "re:.*mlp\\..*=w4a16-g128", "re:.*self_attn\\..*=w8a8"]
// Layers that inference engines fuse (q/k/v, gate/up, Mixtral's w1/w3) must share one scheme.
// A mixture of experts' router (mlp.gate, block_sparse_moe.gate) is quantized only by a rule
// that names it exactly; regular expressions pass it by.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "model/causal_lm.h"
#include "quant/fake_quant_linear.h"
#include "quant/quant_args.h"

namespace qtrain::quant {

struct QuantRule {
  std::string pattern;
  Scheme scheme;
};

// Parses "PATTERN=SCHEME"; throws qtrain::Error naming `key` and the entry.
std::vector<QuantRule> parse_rules(const std::vector<std::string>& rules, const std::string& key = "quant.rules");
bool pattern_matches(const std::string& pattern, const std::string& module_name);

// Linear module name -> scheme, for every linear that a rule quantizes.
std::map<std::string, Scheme> assign_schemes(model::CausalLMImpl& model, const std::vector<QuantRule>& rules);

// Wraps each assigned linear in a FakeQuantLinear (registered as "<linear>.quant").
void attach_fake_quant(model::CausalLMImpl& model, const std::map<std::string, Scheme>& assignment,
                       const FakeQuantOptions& options);

// NVFP4: each fake-quantized layer of a fused group (q/k/v, gate/up of one decoder layer)
// takes the group's global scale (FakeQuantLinear::share_global_scale). attach_fake_quant
// calls it; so must whoever replaces fake-quant layers (the pruned export).
// `restart_learned`: FakeQuantLinear::share_global_scale's (false for layers that carry
// trained scales already).
void share_fused_global_scales(model::CausalLMImpl& model, bool restart_learned = true);

// The fake-quantized linears of a model, by module name.
std::map<std::string, FakeQuantLinear*> fake_quant_layers(model::CausalLMImpl& model);

// The quantizers of activations: every fake-quantized linear's input (by name), then the KV
// cache's keys and values (by layer); the same order on every rank.
std::vector<TensorQuantizer*> activation_quantizers(model::CausalLMImpl& model);

// Calibrates every static activation scale (and the KV-cache scales of kv_cache_quant.h):
// for each observer pass, `run_batches()` must
// push the calibration data through the model (no grad); statistics are reduced over all
// ranks, then the scales are frozen. A no-op when no layer has static activations.
void calibrate_activations(model::CausalLMImpl& model, const std::function<void()>& run_batches);

}  // namespace qtrain::quant
