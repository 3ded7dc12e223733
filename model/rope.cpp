// inv_freq for default / linear / llama3 rope (Llama 3.1's frequency-dependent scaling,
// transformers' _compute_llama3_parameters), and cos/sin tables.
#include "model/rope.h"

#include <cmath>
#if QTRAIN_WITH_CUDA
#include "model/cuda/fused_layers.h"
#endif

namespace qtrain::model {

RotaryEmbedding::RotaryEmbedding(const RopeConfig& rope, int64_t head_dim) {
  // base ** (arange(0, dim, 2) / dim), in fp32 like the reference.
  auto exponents = torch::arange(0, head_dim, 2, torch::kInt64).to(torch::kFloat32) / static_cast<double>(head_dim);
  auto inv_freq = 1.0 / torch::pow(torch::scalar_tensor(rope.theta, torch::kFloat32), exponents);
  if (rope.type == "linear") {
    inv_freq = inv_freq / rope.factor;
  } else if (rope.type == "llama3") {
    const double old_len = static_cast<double>(rope.original_max_position_embeddings);
    const double low_freq_wavelen = old_len / rope.low_freq_factor;
    const double high_freq_wavelen = old_len / rope.high_freq_factor;
    auto wavelen = 2.0 * M_PI / inv_freq;
    // Long wavelengths are scaled by 1/factor, short ones kept, the band between interpolated.
    auto scaled = torch::where(wavelen > low_freq_wavelen, inv_freq / rope.factor, inv_freq);
    auto smooth = (old_len / wavelen - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor);
    auto smoothed = (1 - smooth) * scaled / rope.factor + smooth * scaled;
    auto is_medium = (wavelen >= high_freq_wavelen).logical_and(wavelen <= low_freq_wavelen);
    inv_freq = torch::where(is_medium, smoothed, scaled);
  }
  inv_freq_ = inv_freq.to(torch::kFloat32).contiguous();
}

std::pair<torch::Tensor, torch::Tensor> RotaryEmbedding::cos_sin(int64_t seq_len, int64_t offset,
                                                                 torch::Device device,
                                                                 torch::ScalarType dtype) const {
  auto positions = torch::arange(offset, offset + seq_len, torch::dtype(torch::kFloat32).device(device));
  auto freqs = torch::outer(positions, inv_freq_.to(device));  // [seq, dim/2], fp32
  auto emb = torch::cat({freqs, freqs}, -1);
  auto cos = emb.cos() * attention_scaling_;
  auto sin = emb.sin() * attention_scaling_;
  return {cos.to(dtype), sin.to(dtype)};
}

torch::Tensor apply_rotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
#if QTRAIN_WITH_CUDA
  if (x.is_cuda() && cuda::fused_layers_allowed() && cuda::fused_rotary_applies(x, cos, sin))
    return cuda::fused_rotary(x, cos, sin);  // one pass (model/cuda/rotary_kernel.cu)
#endif
  return apply_rotary_reference(x, cos, sin);
}

torch::Tensor apply_rotary_reference(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  const auto half = x.size(-1) / 2;
  auto x1 = x.narrow(-1, 0, half);
  auto x2 = x.narrow(-1, half, half);
  auto rotated = torch::cat({-x2, x1}, -1);
  return x * cos + rotated * sin;
}

}  // namespace qtrain::model
