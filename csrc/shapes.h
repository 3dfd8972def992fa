// Layer geometry shared by the argument checks and the kernels; free of torch headers so
// that the CPU kernels' ISA-specific translation units (csrc/cpu/kernels_*.cpp) can use it.
#pragma once

#include <cstdint>

namespace lenet_ext {

struct ConvShape {
  int64_t N, C, H, W, O, KH, KW, OH, OW, stride, pad;
  constexpr int64_t P() const { return OH * OW; }      // output positions per image
  constexpr int64_t K() const { return C * KH * KW; }  // taps per output
  // P rounded up to a multiple of 8: the row length of the kernels' unrolled buffers, so that
  // every vector loop runs whole vectors (LeNet's c3 has P = 100) over zero padding.
  constexpr int64_t Pp() const { return (OH * OW + 7) / 8 * 8; }

  // The stride-1 "wide" layout (kernels_impl.h): the input zero-padded to (C, Hp, Wp) plus a zero
  // tail, and outputs computed at Wp columns per row (the last Wp - OW of each row are discarded),
  // so that the unrolled input row of tap (c, i, j) is the padded input read from (c, i, j) on.
  constexpr bool wide() const { return stride == 1 && !whole_input(); }
  constexpr int64_t Hp() const { return H + 2 * pad; }
  constexpr int64_t Wp() const { return W + 2 * pad; }
  constexpr int64_t Pw() const { return (OH * Wp() + 7) / 8 * 8; }                // wide outputs per channel
  constexpr int64_t padded_image() const { return C * Hp() * Wp() + Wp() + 8; }  // covers every read of Pw from a tap

  // Values per image after pool x pool average pooling of the output (stride pool, floor mode).
  constexpr int64_t pooled_image(int64_t pool) const { return O * (OH / pool) * (OW / pool); }
  // The window covers the whole input with no padding (LeNet's c5): one output per image.
  constexpr bool whole_input() const { return pad == 0 && KH == H && KW == W; }
};

}  // namespace lenet_ext
