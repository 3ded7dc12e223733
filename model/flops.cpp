// FLOP counting from the config alone.
#include "model/flops.h"

namespace qtrain::model {

double forward_flops_per_token(const ModelConfig& c, int64_t seq_len) {
  const double h = c.hidden_size, q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
  const double per_layer = h * q + 2 * h * kv + q * h + 3 * h * c.intermediate_size;
  const double matmul = c.num_hidden_layers * per_layer + c.vocab_size * h;
  return 2 * matmul + 2.0 * c.num_hidden_layers * seq_len * q;
}

double distill_flops_per_token(const ModelConfig& student, const ModelConfig* teacher, int64_t seq_len) {
  return 3 * forward_flops_per_token(student, seq_len) + (teacher ? forward_flops_per_token(*teacher, seq_len) : 0.0);
}

}  // namespace qtrain::model
