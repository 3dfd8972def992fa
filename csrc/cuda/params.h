// The arguments of the CUDA kernels' launch sequences: plain pointers and shapes, free of torch and
// of CUDA headers, so that the ops (csrc/cuda/*.cpp, compiled by the C++ compiler with torch's
// headers), the kernels (csrc/cuda/*_kernels.cu, compiled by nvcc without them) and the emulator
// (cpp_tests/cuda_emulation.cpp) share them.
#pragma once

#include <cstdint>

#include "../shapes.h"

#if defined(__CUDACC__) && !defined(LENET_HOST_DEVICE)
#define LENET_HOST_DEVICE __host__ __device__
#elif !defined(LENET_HOST_DEVICE)
#define LENET_HOST_DEVICE
#endif

namespace lenet_ext {
namespace cuda {

// ---------------------------------------------------------------- convolutions (conv_kernels.cuh)

template <typename T>
struct ConvForward {
  ConvShape s;
  const T *x, *w, *b;
  T* y;
};

// From g = the gradient at the pre-activation (N, O, OH, OW): dx, dw, db. v2 needs `partial`
// (conv_grad_chunks(s) x conv_grad_elements(s) values) unless the window covers the whole input.
template <typename T>
struct ConvBackward {
  ConvShape s;
  const T *g, *x, *w;
  T *gx, *gw, *gb;
  T* partial;
};

// conv2d_sigmoid_pool's forward and backward. A null gradient pointer is not computed.
template <typename T>
struct ConvPool {
  ConvShape s;
  int64_t pool;
  const T *x, *w, *b;  // forward inputs (b may be null)
  T *act, *pooled;     // forward outputs
};

template <typename T>
struct ConvPoolBackward {
  ConvShape s;
  int64_t pool;
  const T *gp, *ga, *a, *x, *w;  // ga may be null
  T* g;                          // scratch (N, O, OH, OW)
  T *gx, *gw, *gb;               // null: not wanted
  T* partial;                    // v2's partial sums (see ConvBackward)
};

// Images per partial sum of a weight gradient: enough (image, position) pairs per block to keep
// its 256 threads busy, few enough chunks for the second pass.
inline int64_t conv_grad_chunk(const ConvShape& s) {
  const int64_t per_image = s.OH * s.OW > 0 ? s.OH * s.OW : 1;
  const int64_t chunk = (4096 + per_image - 1) / per_image;
  const int64_t min_chunk = (s.N + 65534) / 65535;  // the grid's y dimension
  return chunk > min_chunk ? chunk : min_chunk;
}
inline int64_t conv_grad_chunks(const ConvShape& s) {
  const int64_t chunk = conv_grad_chunk(s);
  return (s.N + chunk - 1) / chunk;
}
LENET_HOST_DEVICE inline int64_t conv_grad_elements(const ConvShape& s) { return s.O * s.C * s.KH * s.KW + s.O; }

// ------------------------------------------ LeNet-5 (lenet5_kernels.cuh, lenet5_backward_kernels.cuh)

template <typename T>
struct LeNet5Weights {
  const T *c1w, *c1b, *c3w, *c3b, *c5w, *c5b, *f6w, *f6b, *outw, *outb;
  int64_t classes;
};

// Where a training forward saves each image's activations (all null for inference).
template <typename T>
struct LeNet5Acts {
  T *c1, *s2, *c3, *s4, *c5, *f6;  // (N,6,28,28) (N,6,14,14) (N,16,10,10) (N,16,5,5) (N,120) (N,84)
};

// The kernel's pointers from the ten contiguous parameters (c1w, c1b, c3w, c3b, c5w, c5b, f6w, f6b,
// outw, outb: contiguous_lenet5_params' handles, or any container indexed 0..9 of things that
// point to tensors).
template <typename T, typename Params>
LeNet5Weights<T> lenet5_weights(const Params& w, int64_t classes) {
  auto ptr = [&](int i) { return w[i]->template const_data_ptr<T>(); };
  return {ptr(0), ptr(1), ptr(2), ptr(3), ptr(4), ptr(5), ptr(6), ptr(7), ptr(8), ptr(9), classes};
}

constexpr int64_t kChunk = 64;                        // images per partial sum of a conv parameter's gradient
constexpr int64_t kConvParams = 150 + 6 + 2400 + 16;  // c1 weight, c1 bias, c3 weight, c3 bias

inline int64_t lenet5_backward_chunks(int64_t N) { return (N + kChunk - 1) / kChunk; }

// The tensors of one backward call (contiguous; scratch: g1 (N, 4704), g3 (N, 1600), g5 (N, 120),
// g6 (N, 84), partial (chunks, kConvParams); gx null when the images need no gradient).
template <typename T>
struct LeNet5Backward {
  int64_t N, classes;
  const T *glogits, *images, *c1, *s2, *c3, *s4, *c5, *f6, *c1w, *c3w, *c5w, *f6w, *outw;
  T *g1, *g3, *g5, *g6, *partial, *gx;
  T *gw1, *gb1, *gw3, *gb3, *gw5, *gb5, *gw6, *gb6, *gwo, *gbo;
};

}  // namespace cuda
}  // namespace lenet_ext
