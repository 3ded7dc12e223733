// FLOP counting from the config alone.
#include "model/flops.h"

namespace qtrain::model {

double forward_flops_per_token(const ModelConfig& c, int64_t seq_len) {
  const double h = c.hidden_size, q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
  const double attention = h * q + 2 * h * kv + q * h;
  // A sparse layer runs its router and the k experts each token is routed to.
  const double dense = 3 * h * c.intermediate_size;
  const double sparse = h * c.num_experts + c.num_experts_per_tok * 3 * h * c.moe_intermediate_size;
  double matmul = c.vocab_size * h;
  for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer) matmul += attention + (c.is_moe_layer(layer) ? sparse : dense);
  return 2 * matmul + 2.0 * c.num_hidden_layers * seq_len * q;
}

double distill_flops_per_token(const ModelConfig& student, const ModelConfig* teacher, int64_t seq_len) {
  return 3 * forward_flops_per_token(student, seq_len) + (teacher ? forward_flops_per_token(*teacher, seq_len) : 0.0);
}

}  // namespace qtrain::model
