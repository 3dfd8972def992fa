// Layer geometry shared by the argument checks and the kernels: the shapes of a convolution,
// an average pooling and a linear layer, and the helpers that compute them from tensors. Free of
// torch headers, so that the CPU kernels' ISA-specific translation units (csrc/cpu/kernels_*.cpp)
// can use it: the helpers are templates over anything with dim(), size(d) and sizes() (at::Tensor).
#pragma once

#include <cstdint>
#include <vector>

namespace lenet_ext {

// Output size of a window of `kernel` sliding with `stride` over `size` (already padded), floor mode.
inline int64_t window_out(int64_t size, int64_t kernel, int64_t stride) { return (size - kernel) / stride + 1; }

struct ConvShape {
  int64_t N, C, H, W, O, KH, KW, OH, OW, stride, pad;
  constexpr int64_t P() const { return OH * OW; }      // output positions per image
  constexpr int64_t K() const { return C * KH * KW; }  // taps per output
  // Rows of the kernels' buffers are padded to multiples of kRowAlign values, a multiple of every
  // instruction set's vector length (16 floats with AVX-512), so every vector loop runs whole vectors.
  static constexpr int64_t kRowAlign = 16;
  static constexpr int64_t align(int64_t n) { return (n + kRowAlign - 1) / kRowAlign * kRowAlign; }
  // P rounded up to a multiple of kRowAlign: the row length of the kernels' unrolled buffers
  // (LeNet's c3 has P = 100), over zero padding.
  constexpr int64_t Pp() const { return align(OH * OW); }

  // The stride-1 "wide" layout (kernels_impl.h): the input zero-padded to (C, Hp, Wp) plus a zero
  // tail, and outputs computed at Wp columns per row (the last Wp - OW of each row are discarded),
  // so that the unrolled input row of tap (c, i, j) is the padded input read from (c, i, j) on.
  constexpr bool wide() const { return stride == 1 && !whole_input(); }
  constexpr int64_t Hp() const { return H + 2 * pad; }
  constexpr int64_t Wp() const { return W + 2 * pad; }
  constexpr int64_t Pw() const { return align(OH * Wp()); }  // wide outputs per channel
  constexpr int64_t padded_image() const {
    return C * Hp() * Wp() + Wp() + kRowAlign;
  }  // covers every read of Pw from a tap

  // Values per image after pool x pool average pooling of the output (stride pool, floor mode).
  constexpr int64_t pooled_image(int64_t pool) const { return O * (OH / pool) * (OW / pool); }
  // The window covers the whole input with no padding (LeNet's c5): one output per image.
  constexpr bool whole_input() const { return pad == 0 && KH == H && KW == W; }
};

// A convolution: input (N, C, H, W), weight (O, C, KH, KW), output (N, O, OH, OW).
template <class Tensor>
ConvShape conv_shape(const Tensor& x, const Tensor& w, int64_t stride, int64_t pad) {
  ConvShape s{x.size(0), x.size(1), x.size(2), x.size(3), w.size(0), w.size(2), w.size(3), 0, 0, stride, pad};
  s.OH = window_out(s.H + 2 * pad, s.KH, stride);
  s.OW = window_out(s.W + 2 * pad, s.KW, stride);
  return s;
}

// Rows of a (..., K) tensor seen as a matrix, and the (..., O) size of a linear layer's output.
template <class Tensor>
int64_t leading_rows(const Tensor& t) {
  int64_t rows = 1;
  for (int64_t d = 0; d + 1 < t.dim(); ++d) rows *= t.size(d);
  return rows;
}

template <class Tensor>
std::vector<int64_t> linear_output_size(const Tensor& input, int64_t out_features) {
  std::vector<int64_t> size(input.sizes().begin(), input.sizes().end());
  size.back() = out_features;
  return size;
}

// An average pooling: input (N, C, H, W), output (N, C, OH, OW).
struct PoolShape {
  int64_t N, C, H, W, OH, OW;
};

template <class Sizes>
PoolShape pool_shape(const Sizes& input_size, int64_t kernel_size, int64_t stride) {
  return {input_size[0],
          input_size[1],
          input_size[2],
          input_size[3],
          window_out(input_size[2], kernel_size, stride),
          window_out(input_size[3], kernel_size, stride)};
}

}  // namespace lenet_ext
