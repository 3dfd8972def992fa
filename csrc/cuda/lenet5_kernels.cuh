// LeNet-5's whole forward in one kernel (lenet5_forward.cu for inference, lenet5_train.cu for
// training, which also saves the activations its backward reads).
//
// One block of kLeNetThreads threads per image; the image's activations stay in shared memory
// from the input to the logits, and only the logits (and, when training, the activations) are
// written to global memory:
//   x   (28, 28) zero-padded by 2 into a 32 x 32 tile
//   c1  conv 1->6 5x5 + sigmoid, pooled 2x2 in the same loop:    s2 (6, 14, 14)    one thread per pooled value
//   c3  conv 6->16 5x5 + sigmoid, pooled 2x2 in the same loop:   s4 (16, 5, 5)     one thread per pooled value
//   c5  400 -> 120 + sigmoid (the 5x5 conv over the 5x5 s4)       one thread per output
//   f6  120 -> 84 + sigmoid                                       one thread per output
//   out 84 -> classes                                             one thread per output
// A pooled value's thread computes the four convolution outputs of its window, so every output is
// computed once and the pooling reads registers. Weights are read through the read-only cache
// (every block reads the same ones). Each sum runs in a fixed order: deterministic.
#pragma once

#include <cstdint>

#include "device.cuh"

namespace lenet_ext {
namespace cuda {

constexpr int kLeNetThreads = 256;

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

template <typename T, bool kSave>
__global__ void __launch_bounds__(kLeNetThreads)
    lenet5_forward_kernel(const T* __restrict__ images, LeNet5Weights<T> p, T* __restrict__ logits,
                          LeNet5Acts<T> save) {
  __shared__ T xs[32 * 32];
  __shared__ T s2[6 * 14 * 14];
  __shared__ T s4[16 * 5 * 5];
  __shared__ T c5[120];
  __shared__ T f6[84];
  const int64_t n = blockIdx.x;
  const int tid = threadIdx.x;
  const T* img = images + n * 784;
  for (int i = tid; i < 32 * 32; i += blockDim.x) {
    const int r = i / 32 - 2, c = i % 32 - 2;
    xs[i] = (r >= 0 && r < 28 && c >= 0 && c < 28) ? img[r * 28 + c] : T(0);
  }
  __syncthreads();

  // c1 + sigmoid + 2x2 pooling: thread per (o, ph, pw) of s2.
  for (int item = tid; item < 6 * 196; item += blockDim.x) {
    const int o = item / 196, q = item % 196, ph = q / 14, pw = q % 14;
    const T* w = p.c1w + o * 25;
    const T b = ro(p.c1b + o);
    T a00 = b, a01 = b, a10 = b, a11 = b;
    for (int i = 0; i < 5; ++i) {
      const T* row = xs + (2 * ph + i) * 32 + 2 * pw;
      for (int j = 0; j < 5; ++j) {
        const T wv = ro(w + i * 5 + j);
        a00 += wv * row[j];
        a01 += wv * row[j + 1];
        a10 += wv * row[j + 32];
        a11 += wv * row[j + 33];
      }
    }
    const T y00 = sigmoid(a00), y01 = sigmoid(a01), y10 = sigmoid(a10), y11 = sigmoid(a11);
    const T pooled = (y00 + y01 + y10 + y11) * T(0.25);
    s2[item] = pooled;
    if (kSave) {
      T* out = save.c1 + (n * 6 + o) * 784 + (2 * ph) * 28 + 2 * pw;
      out[0] = y00;
      out[1] = y01;
      out[28] = y10;
      out[29] = y11;
      save.s2[n * 1176 + item] = pooled;
    }
  }
  __syncthreads();

  // c3 + sigmoid + 2x2 pooling: thread per (o, ph, pw) of s4.
  for (int item = tid; item < 16 * 25; item += blockDim.x) {
    const int o = item / 25, q = item % 25, ph = q / 5, pw = q % 5;
    const T b = ro(p.c3b + o);
    T a00 = b, a01 = b, a10 = b, a11 = b;
    for (int c = 0; c < 6; ++c) {
      const T* w = p.c3w + (o * 6 + c) * 25;
      for (int i = 0; i < 5; ++i) {
        const T* row = s2 + c * 196 + (2 * ph + i) * 14 + 2 * pw;
        for (int j = 0; j < 5; ++j) {
          const T wv = ro(w + i * 5 + j);
          a00 += wv * row[j];
          a01 += wv * row[j + 1];
          a10 += wv * row[j + 14];
          a11 += wv * row[j + 15];
        }
      }
    }
    const T y00 = sigmoid(a00), y01 = sigmoid(a01), y10 = sigmoid(a10), y11 = sigmoid(a11);
    const T pooled = (y00 + y01 + y10 + y11) * T(0.25);
    s4[item] = pooled;
    if (kSave) {
      T* out = save.c3 + (n * 16 + o) * 100 + (2 * ph) * 10 + 2 * pw;
      out[0] = y00;
      out[1] = y01;
      out[10] = y10;
      out[11] = y11;
      save.s4[n * 400 + item] = pooled;
    }
  }
  __syncthreads();

  // The dense layers: c5 (400 -> 120, the 5x5 conv over s4), f6 (120 -> 84), out (84 -> classes).
  for (int j = tid; j < 120; j += blockDim.x) {
    const T* w = p.c5w + j * 400;
    T acc = ro(p.c5b + j);
    for (int k = 0; k < 400; ++k) acc += ro(w + k) * s4[k];
    c5[j] = sigmoid(acc);
    if (kSave) save.c5[n * 120 + j] = c5[j];
  }
  __syncthreads();
  for (int j = tid; j < 84; j += blockDim.x) {
    const T* w = p.f6w + j * 120;
    T acc = ro(p.f6b + j);
    for (int k = 0; k < 120; ++k) acc += ro(w + k) * c5[k];
    f6[j] = sigmoid(acc);
    if (kSave) save.f6[n * 84 + j] = f6[j];
  }
  __syncthreads();
  for (int64_t j = tid; j < p.classes; j += blockDim.x) {
    const T* w = p.outw + j * 84;
    T acc = ro(p.outb + j);
    for (int k = 0; k < 84; ++k) acc += ro(w + k) * f6[k];
    logits[n * p.classes + j] = acc;
  }
}

}  // namespace cuda
}  // namespace lenet_ext
