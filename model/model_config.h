// The architecture of a Llama-family decoder (Llama 2/3, Qwen2, Mistral) as read from a
// Hugging Face config.json. Keys that qtrain does not model are kept verbatim, so that a
// saved config.json differs from the loaded one only where qtrain changed something.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace qtrain::model {

// Rotary embedding parameters, from `rope_parameters` (transformers >= 5) or
// `rope_theta` + `rope_scaling` (older configs). Types: default, linear, llama3.
struct RopeConfig {
  std::string type = "default";
  double theta = 10000.0;
  double factor = 1.0;                              // linear, llama3
  double low_freq_factor = 1.0;                     // llama3
  double high_freq_factor = 4.0;                    // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3
  bool operator==(const RopeConfig& o) const;
};

struct ModelConfig {
  std::string model_type;  // llama | qwen2 | qwen3 | mistral | qwen3_moe | mixtral
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  RopeConfig rope;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;  // biases on q/k/v (Qwen2 always; Llama's attention_bias)
  bool o_bias = false;    // bias on o_proj (Llama's attention_bias)
  bool mlp_bias = false;
  bool qk_norm = false;   // RMSNorm over head_dim on each query and key head before rotary (Qwen3)
  // Mixture of experts (model/moe.h): 0 experts = dense. Qwen3-MoE reads num_experts (or
  // num_local_experts, which transformers >= 5.1 writes), num_experts_per_tok,
  // moe_intermediate_size, norm_topk_prob, decoder_sparse_step, mlp_only_layers; Mixtral
  // num_local_experts, num_experts_per_tok (intermediate_size is an expert's; top-k always
  // renormalised; every layer sparse).
  int64_t num_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t moe_intermediate_size = 0;
  bool norm_topk_prob = false;
  int64_t decoder_sparse_step = 1;
  std::vector<int64_t> mlp_only_layers;
  double router_aux_loss_coef = 0.0;  // as the checkpoint's config says (HF's default 0.001)
  bool is_moe_layer(int64_t layer) const;
  std::optional<int64_t> sliding_window;  // set when the checkpoint uses sliding-window attention
  std::string dtype = "float32";  // dtype of the stored weights, as config.json names it

  nlohmann::json raw;  // the whole config.json as read

  // Parses and validates; `source` names the file in errors.
  static ModelConfig from_json(const nlohmann::json& j, const std::string& source);
  static ModelConfig from_file(const std::string& path);
  // The config.json to write: `raw` with the modelled keys updated.
  nlohmann::json to_json() const;

  int64_t kv_groups() const { return num_attention_heads / num_key_value_heads; }
  bool is_moe() const { return num_experts > 0; }
  int64_t num_parameters() const;
  // Those outside the decoder layers: embeddings, lm_head when untied, the final norm.
  int64_t root_parameters() const { return vocab_size * hidden_size * (tie_word_embeddings ? 1 : 2) + hidden_size; }
};

}  // namespace qtrain::model
