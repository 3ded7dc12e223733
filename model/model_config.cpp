// Parsing and validation of Hugging Face config.json for Llama, Qwen2 and Mistral.
#include "model/model_config.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <set>
#include <tuple>
#include <type_traits>
#include <vector>

#include "common/error.h"
#include "common/json_file.h"

namespace qtrain::model {
namespace {

using nlohmann::json;

// An integer, from a JSON integer or a float that holds one exactly (4096.0): a non-integer
// size (1.5) or one beyond int64 (1e300, whose conversion is undefined) is a wrong type.
bool integer_value(const json& v, int64_t* out) {
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) return false;
    *out = v.get<int64_t>();
    return true;
  }
  if (!v.is_number_float()) return false;
  const double d = v.get<double>();
  if (!(d >= -9.2e18 && d <= 9.2e18) || d != static_cast<double>(static_cast<int64_t>(d))) return false;
  *out = static_cast<int64_t>(d);
  return true;
}

template <class T>
T get_required(const json& j, const std::string& key, const std::string& source, const char* expected) {
  if (!j.contains(key) || j[key].is_null()) throw Error("missing required key").file(source).key(key).expected(expected);
  const auto wrong = [&] { return Error("wrong type: " + j[key].dump()).file(source).key(key).expected(expected); };
  if constexpr (std::is_same_v<T, int64_t>) {
    int64_t v = 0;
    if (!integer_value(j[key], &v)) throw wrong();
    return v;
  } else if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
    if (!j[key].is_array()) throw wrong();
    std::vector<int64_t> out;
    for (const auto& item : j[key]) {
      int64_t v = 0;
      if (!integer_value(item, &v)) throw wrong();
      out.push_back(v);
    }
    return out;
  } else {
    try {
      return j[key].get<T>();
    } catch (const json::exception&) {
      throw wrong();
    }
  }
}

template <class T>
T get_or(const json& j, const std::string& key, T fallback, const std::string& source, const char* expected) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  return get_required<T>(j, key, source, expected);
}

// The mixture-of-experts keys of qwen3_moe and mixtral (transformers' Qwen3MoeConfig and
// MixtralConfig); absent for the dense families.
void parse_moe(const json& j, const std::string& src, ModelConfig& c) {
  if (c.model_type != "qwen3_moe" && c.model_type != "mixtral") return;
  const bool mixtral = c.model_type == "mixtral";
  // transformers >= 5.1 writes num_local_experts for Qwen3-MoE too; older ones num_experts.
  const char* experts_key = !mixtral && j.contains("num_experts") ? "num_experts" : "num_local_experts";
  c.num_experts = get_required<int64_t>(j, experts_key, src, "integer");
  c.num_experts_per_tok = get_required<int64_t>(j, "num_experts_per_tok", src, "integer");
  if (c.num_experts <= 0) throw Error("a mixture of experts needs experts").file(src).key(experts_key).expected("> 0");
  if (c.num_experts_per_tok <= 0 || c.num_experts_per_tok > c.num_experts)
    throw Error("num_experts_per_tok is " + std::to_string(c.num_experts_per_tok)).file(src).key("num_experts_per_tok")
        .expected("in [1, " + std::to_string(c.num_experts) + "]");
  c.router_aux_loss_coef = get_or<double>(j, "router_aux_loss_coef", 0.001, src, "number");
  if (mixtral) {
    c.moe_intermediate_size = c.intermediate_size;
    c.norm_topk_prob = true;
    if (get_or<double>(j, "router_jitter_noise", 0.0, src, "number") != 0.0)
      throw Error("router jitter noise is not implemented").file(src).key("router_jitter_noise").expected("0");
    return;
  }
  c.moe_intermediate_size = get_required<int64_t>(j, "moe_intermediate_size", src, "integer");
  if (c.moe_intermediate_size <= 0)
    throw Error("moe_intermediate_size must be positive").file(src).key("moe_intermediate_size").expected("> 0");
  c.norm_topk_prob = get_or<bool>(j, "norm_topk_prob", false, src, "bool");
  c.decoder_sparse_step = get_or<int64_t>(j, "decoder_sparse_step", 1, src, "integer");
  if (c.decoder_sparse_step <= 0)
    throw Error("decoder_sparse_step must be positive").file(src).key("decoder_sparse_step").expected(">= 1");
  c.mlp_only_layers = get_or<std::vector<int64_t>>(j, "mlp_only_layers", {}, src, "list of layer indices");
}

RopeConfig parse_rope(const json& j, const std::string& src) {
  RopeConfig r;
  json params;
  std::string where;
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object()) {
    params = j["rope_parameters"];  // transformers >= 5: theta lives inside
    where = "rope_parameters";
    r.theta = get_or<double>(params, "rope_theta", get_or<double>(j, "rope_theta", 10000.0, src, "number"), src,
                             "number");
  } else {
    r.theta = get_or<double>(j, "rope_theta", 10000.0, src, "number");
    if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) params = j["rope_scaling"];
    where = "rope_scaling";
  }
  if (params.is_object()) {
    // Older configs name the type "type", newer ones "rope_type".
    if (params.contains("rope_type")) r.type = get_required<std::string>(params, "rope_type", src, "string");
    else if (params.contains("type")) r.type = get_required<std::string>(params, "type", src, "string");
    if (r.type != "default") r.factor = get_required<double>(params, "factor", src, "number > 0");
    if (r.type == "llama3") {
      r.low_freq_factor = get_required<double>(params, "low_freq_factor", src, "number");
      r.high_freq_factor = get_required<double>(params, "high_freq_factor", src, "number");
      r.original_max_position_embeddings =
          get_required<int64_t>(params, "original_max_position_embeddings", src, "integer");
    }
  }
  if (r.type != "default" && r.type != "linear" && r.type != "llama3")
    throw Error("unsupported rope type '" + r.type + "'").file(src).key(where + ".rope_type").expected("default|linear|llama3");
  if (r.theta <= 0 || r.factor <= 0) throw Error("rope theta and factor must be positive").file(src).key(where);
  if (r.type == "llama3" && r.low_freq_factor <= 0)
    throw Error("must be positive").file(src).key(where + ".low_freq_factor").expected("number > 0");
  if (r.type == "llama3" && r.original_max_position_embeddings <= 0)
    throw Error("must be positive").file(src).key(where + ".original_max_position_embeddings").expected("integer > 0");
  if (r.type == "llama3" && r.high_freq_factor <= r.low_freq_factor)
    throw Error("high_freq_factor must exceed low_freq_factor").file(src).key(where + ".high_freq_factor");
  return r;
}

void check_positive(int64_t v, const std::string& key, const std::string& src) {
  if (v <= 0) throw Error("must be positive, got " + std::to_string(v)).file(src).key(key).expected("integer > 0");
}

// Sizes beyond any model by orders of magnitude (the largest published: vocabularies of
// 256k, hidden 16k-25k, 126 layers, 256 experts, 10M-token contexts): a forged or mistyped
// config, refused before anything is allocated (2^40 hidden channels asked LibTorch for a
// petabyte; 10^8 layers for terabytes, one layer at a time).
constexpr int64_t kMaxWidth = int64_t{1} << 20, kMaxVocab = int64_t{1} << 24, kMaxLayers = int64_t{1} << 14,
                  kMaxCount = int64_t{1} << 16, kMaxPositions = int64_t{1} << 24;
// Parameters at most (2^44, 17.6 trillion): the sizes' product must also stay far from int64.
constexpr long double kMaxParameters = 17592186044416.0L;

void check_at_most(int64_t v, int64_t limit, const std::string& key, const std::string& src) {
  if (v > limit)
    throw Error("is " + std::to_string(v) + ", beyond any model").file(src).key(key).expected(
        "at most " + std::to_string(limit));
}

// num_parameters() in long double, so that sizes whose product overflows int64 are caught.
long double parameters_estimate(const ModelConfig& c) {
  const long double h = c.hidden_size, q = static_cast<long double>(c.num_attention_heads) * c.head_dim,
                    kv = static_cast<long double>(c.num_key_value_heads) * c.head_dim;
  const long double mlp = 3 * h * std::max(c.intermediate_size, c.moe_intermediate_size) *
                          std::max<int64_t>(1, c.num_experts);
  return c.num_hidden_layers * (2 * h * q + 2 * h * kv + mlp) + 2 * h * c.vocab_size;
}

}  // namespace

bool RopeConfig::operator==(const RopeConfig& o) const {
  return type == o.type && theta == o.theta && factor == o.factor && low_freq_factor == o.low_freq_factor &&
         high_freq_factor == o.high_freq_factor &&
         original_max_position_embeddings == o.original_max_position_embeddings;
}

ModelConfig ModelConfig::from_json(const json& j, const std::string& src) {
  if (!j.is_object()) throw Error("config is not a JSON object").file(src);
  ModelConfig c;
  c.raw = j;
  c.model_type = get_required<std::string>(j, "model_type", src, "llama|qwen2|qwen3|mistral|qwen3_moe|mixtral");
  static const std::set<std::string> supported = {"llama", "qwen2", "qwen3", "mistral", "qwen3_moe", "mixtral"};
  if (!supported.count(c.model_type))
    throw Error("unsupported model_type '" + c.model_type + "'").file(src).key("model_type")
        .expected("llama|qwen2|qwen3|mistral|qwen3_moe|mixtral");
  c.vocab_size = get_required<int64_t>(j, "vocab_size", src, "integer");
  c.hidden_size = get_required<int64_t>(j, "hidden_size", src, "integer");
  c.intermediate_size = get_required<int64_t>(j, "intermediate_size", src, "integer");
  c.num_hidden_layers = get_required<int64_t>(j, "num_hidden_layers", src, "integer");
  c.num_attention_heads = get_required<int64_t>(j, "num_attention_heads", src, "integer");
  c.num_key_value_heads = get_or<int64_t>(j, "num_key_value_heads", c.num_attention_heads, src, "integer");
  for (auto [k, v] : {std::pair{"vocab_size", c.vocab_size}, {"hidden_size", c.hidden_size},
                      {"intermediate_size", c.intermediate_size}, {"num_hidden_layers", c.num_hidden_layers},
                      {"num_attention_heads", c.num_attention_heads}, {"num_key_value_heads", c.num_key_value_heads}})
    check_positive(v, k, src);
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    throw Error("num_attention_heads (" + std::to_string(c.num_attention_heads) + ") is not a multiple of it")
        .file(src).key("num_key_value_heads").expected("a divisor of num_attention_heads");
  c.head_dim = get_or<int64_t>(j, "head_dim", 0, src, "integer");
  if (c.head_dim == 0) {
    if (c.hidden_size % c.num_attention_heads != 0)
      throw Error("hidden_size is not divisible by num_attention_heads and head_dim is absent").file(src).key("head_dim");
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  check_positive(c.head_dim, "head_dim", src);
  if (c.head_dim % 2 != 0) throw Error("rotary embeddings need an even head_dim").file(src).key("head_dim");
  c.max_position_embeddings = get_or<int64_t>(j, "max_position_embeddings", 2048, src, "integer");
  check_positive(c.max_position_embeddings, "max_position_embeddings", src);
  c.rms_norm_eps = get_or<double>(j, "rms_norm_eps", 1e-6, src, "number");
  if (!(c.rms_norm_eps > 0.0) || !std::isfinite(c.rms_norm_eps))  // 0 divides by zero on a zero row: NaN
    throw Error("rms_norm_eps is " + j["rms_norm_eps"].dump()).file(src).key("rms_norm_eps").expected("a number > 0");
  const auto act = get_or<std::string>(j, "hidden_act", "silu", src, "silu");
  if (act != "silu") throw Error("unsupported activation '" + act + "'").file(src).key("hidden_act").expected("silu");
  if (get_or<double>(j, "partial_rotary_factor", 1.0, src, "number") != 1.0)
    throw Error("partial rotary embeddings are not supported").file(src).key("partial_rotary_factor").expected("1.0");
  c.rope = parse_rope(j, src);
  c.tie_word_embeddings = get_or<bool>(j, "tie_word_embeddings", false, src, "bool");
  const bool attention_bias = get_or<bool>(j, "attention_bias", false, src, "bool");
  c.qkv_bias = c.model_type == "qwen2" || attention_bias;
  c.o_bias = c.model_type != "qwen2" && attention_bias;
  c.mlp_bias = get_or<bool>(j, "mlp_bias", false, src, "bool");
  // Qwen3 (transformers' Qwen3Attention): q_norm/k_norm over head_dim, attention_bias as Llama's.
  c.qk_norm = c.model_type == "qwen3" || c.model_type == "qwen3_moe";
  parse_moe(j, src, c);
  for (auto [key, v, limit] : {std::tuple{"hidden_size", c.hidden_size, kMaxWidth},
                               {"intermediate_size", c.intermediate_size, kMaxWidth},
                               {"moe_intermediate_size", c.moe_intermediate_size, kMaxWidth},
                               {"head_dim", c.head_dim, kMaxWidth},
                               {"vocab_size", c.vocab_size, kMaxVocab},
                               {"num_hidden_layers", c.num_hidden_layers, kMaxLayers},
                               {"num_attention_heads", c.num_attention_heads, kMaxCount},
                               {"num_key_value_heads", c.num_key_value_heads, kMaxCount},
                               {"num_experts", c.num_experts, kMaxCount},
                               {"max_position_embeddings", c.max_position_embeddings, kMaxPositions}})
    check_at_most(v, limit, key, src);
  if (parameters_estimate(c) > kMaxParameters)
    throw Error("the model would have about " + std::to_string(static_cast<double>(parameters_estimate(c))) +
                " parameters")
        .file(src)
        .key("hidden_size")
        .expected("at most 2^44 parameters");
  // Sliding-window attention is not modelled: keep the window so that the forward can refuse
  // sequences longer than it, where full attention would give different results.
  const bool window_on = c.model_type == "mistral" || c.model_type == "mixtral" ||
                         get_or<bool>(j, "use_sliding_window", false, src, "bool");
  if (window_on && j.contains("sliding_window") && !j["sliding_window"].is_null())
    c.sliding_window = get_required<int64_t>(j, "sliding_window", src, "integer or null");
  if (c.sliding_window && *c.sliding_window <= 0)
    throw Error("must be positive, got " + std::to_string(*c.sliding_window)).file(src).key("sliding_window").expected(
        "integer > 0 or null");
  c.dtype = get_or<std::string>(j, "dtype", get_or<std::string>(j, "torch_dtype", "float32", src, "string"), src, "string");
  return c;
}

ModelConfig ModelConfig::from_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot open model config").file(path);
  json j;
  try {
    j = json::parse(in, duplicate_key_guard(path));  // a key twice: transformers and qtrain would disagree
  } catch (const json::exception& e) {
    throw Error(std::string("malformed JSON: ") + e.what()).file(path);
  }
  return from_json(j, path);
}

json ModelConfig::to_json() const {
  json j = raw;
  j["model_type"] = model_type;
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["head_dim"] = head_dim;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j[raw.contains("torch_dtype") && !raw.contains("dtype") ? "torch_dtype" : "dtype"] = dtype;
  if (is_moe()) {  // under the key(s) the file used; parse_moe reads either
    const bool mixtral = model_type == "mixtral";
    if (mixtral || raw.contains("num_local_experts") || !raw.contains("num_experts")) j["num_local_experts"] = num_experts;
    if (!mixtral && raw.contains("num_experts")) j["num_experts"] = num_experts;
    j["num_experts_per_tok"] = num_experts_per_tok;
    if (!mixtral) {
      j["moe_intermediate_size"] = moe_intermediate_size;
      j["norm_topk_prob"] = norm_topk_prob;
      j["decoder_sparse_step"] = decoder_sparse_step;
      j["mlp_only_layers"] = mlp_only_layers;
    }
  }
  return j;
}

bool ModelConfig::is_moe_layer(int64_t layer) const {
  // transformers' Qwen3MoeDecoderLayer: sparse unless listed in mlp_only_layers, every
  // decoder_sparse_step-th layer; Mixtral: every layer.
  if (num_experts <= 0) return false;
  for (auto l : mlp_only_layers)
    if (l == layer) return false;
  return (layer + 1) % decoder_sparse_step == 0;
}

int64_t ModelConfig::num_parameters() const {
  const int64_t h = hidden_size, q = num_attention_heads * head_dim, kv = num_key_value_heads * head_dim;
  int64_t attn = h * q + 2 * h * kv + q * h + (qkv_bias ? q + 2 * kv : 0) + (o_bias ? h : 0);
  int64_t mlp = 3 * h * intermediate_size + (mlp_bias ? 2 * intermediate_size + h : 0);
  int64_t moe = num_experts * 3 * h * moe_intermediate_size + h * num_experts;  // experts and router
  int64_t n = vocab_size * h * (tie_word_embeddings ? 1 : 2) + h;
  for (int64_t layer = 0; layer < num_hidden_layers; ++layer)
    n += attn + (is_moe_layer(layer) ? moe : mlp) + 2 * h + (qk_norm ? 2 * head_dim : 0);
  return n;
}

}  // namespace qtrain::model
