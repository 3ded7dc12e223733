// compressed-tensors' "pack-quantized" bit layout (docs/formats.md): signed b-bit values
// are offset by 2^(b-1) to unsigned and packed 32/b to an int32 word, element 8j+i of a
// row (for b = 4) in bits [4i, 4i+3] of word j: the first element in the least significant
// bits. Weights are packed along the input dimension, asymmetric zero points along the
// output dimension. Rows whose length is not a multiple of 32/b are padded with zeros.
#pragma once
#include <torch/torch.h>

namespace qtrain::quant {

// The int32 words that `length` values of `num_bits` bits fill when packed densely.
inline int64_t packed_words(int64_t length, int num_bits) { return (length * num_bits + 31) / 32; }

// Values in [-2^(b-1), 2^(b-1) - 1] (any integer or integral-valued float tensor), packed
// along `dim` (0 or the last) -> int32.
torch::Tensor pack_to_int32(const torch::Tensor& values, int num_bits, int64_t dim = -1);
// The inverse: int32 words -> int8 values, `length` of them along `dim`.
torch::Tensor unpack_from_int32(const torch::Tensor& packed, int num_bits, int64_t length, int64_t dim = -1);

}  // namespace qtrain::quant
