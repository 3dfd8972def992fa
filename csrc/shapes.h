// Layer geometry shared by the argument checks and the kernels; free of torch headers so
// that the CPU kernels' ISA-specific translation units (csrc/cpu/kernels_*.cpp) can use it.
#pragma once

#include <cstdint>

namespace lenet_ext {

struct ConvShape {
  int64_t N, C, H, W, O, KH, KW, OH, OW, stride, pad;
  int64_t P() const { return OH * OW; }      // output positions per image
  int64_t K() const { return C * KH * KW; }  // taps per output
  // The window covers the whole input with no padding (LeNet's c5): one output per image.
  bool whole_input() const { return pad == 0 && KH == H && KW == W; }
};

}  // namespace lenet_ext
