// LeNet-5's whole forward in one kernel (lenet5_forward_kernels.cu for inference, lenet5_train_kernels.cu for
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
#include "params.h"

namespace lenet_ext {
namespace cuda {

constexpr int kLeNetThreads = 256;

// One 5x5 convolution + sigmoid + 2x2 average pooling stage between shared-memory tiles, one
// thread per pooled value: `in` holds C channels of IN x IN values (c1: the padded 32 x 32 image;
// c3: s2's 14 x 14 maps), the convolution's output is OUT x OUT (OUT = IN - 4), the pooled one
// P x P. kSave: also write the four activations of each window to save_act (O, OUT, OUT) and the
// pooled values to save_pooled (O, P, P), in global memory.
template <typename T, int C, int IN, int O, bool kSave>
__device__ __forceinline__ void conv5_sigmoid_pool2(const T* in, const T* __restrict__ w, const T* __restrict__ b,
                                                    T* pooled, T* __restrict__ save_act, T* __restrict__ save_pooled) {
  constexpr int OUT = IN - 4, P = OUT / 2;
  for (int item = threadIdx.x; item < O * P * P; item += blockDim.x) {
    const int o = item / (P * P), q = item % (P * P), ph = q / P, pw = q % P;
    const T bias = ro(b + o);
    T a00 = bias, a01 = bias, a10 = bias, a11 = bias;
    for (int c = 0; c < C; ++c) {
      const T* wc = w + (o * C + c) * 25;
      for (int i = 0; i < 5; ++i) {
        const T* row = in + c * IN * IN + (2 * ph + i) * IN + 2 * pw;
        for (int j = 0; j < 5; ++j) {
          const T wv = ro(wc + i * 5 + j);
          a00 += wv * row[j];
          a01 += wv * row[j + 1];
          a10 += wv * row[j + IN];
          a11 += wv * row[j + IN + 1];
        }
      }
    }
    const T y00 = sigmoid(a00), y01 = sigmoid(a01), y10 = sigmoid(a10), y11 = sigmoid(a11);
    const T average = (y00 + y01 + y10 + y11) * T(0.25);
    pooled[item] = average;
    if constexpr (kSave) {
      T* act = save_act + o * OUT * OUT + (2 * ph) * OUT + 2 * pw;
      act[0] = y00;
      act[1] = y01;
      act[OUT] = y10;
      act[OUT + 1] = y11;
      save_pooled[item] = average;
    }
  }
}

template <typename T, bool kSave>
__global__ void __launch_bounds__(kLeNetThreads) lenet5_forward_kernel(const T* __restrict__ images, LeNet5Weights<T> p,
                                                                       T* __restrict__ logits, LeNet5Acts<T> save) {
  LENET_SHARED(T, xs, [32 * 32]);
  LENET_SHARED(T, s2, [6 * 14 * 14]);
  LENET_SHARED(T, s4, [16 * 5 * 5]);
  LENET_SHARED(T, c5, [120]);
  LENET_SHARED(T, f6, [84]);
  const int64_t n = blockIdx.x;
  const int tid = threadIdx.x;
  const T* img = images + n * 784;
  for (int i = tid; i < 32 * 32; i += blockDim.x) {
    const int r = i / 32 - 2, c = i % 32 - 2;
    xs[i] = (r >= 0 && r < 28 && c >= 0 && c < 28) ? img[r * 28 + c] : T(0);
  }
  __syncthreads();
  conv5_sigmoid_pool2<T, 1, 32, 6, kSave>(xs, p.c1w, p.c1b, s2, kSave ? save.c1 + n * 4704 : nullptr,
                                          kSave ? save.s2 + n * 1176 : nullptr);
  __syncthreads();
  conv5_sigmoid_pool2<T, 6, 14, 16, kSave>(s2, p.c3w, p.c3b, s4, kSave ? save.c3 + n * 1600 : nullptr,
                                           kSave ? save.s4 + n * 400 : nullptr);
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

// The forward's one launch, one block per image, on the launcher (lenet5_forward_kernels.cu and
// lenet5_train_kernels.cu: the current stream; the emulator: the CPU). A `save` with null pointers is
// inference; otherwise the activations are written there too.
template <typename T, typename Launch>
void lenet5_forward(int64_t N, const T* images, const LeNet5Weights<T>& p, T* logits, const LeNet5Acts<T>& save,
                    Launch&& launch) {
  if (N == 0) return;
  const dim3 grid(static_cast<unsigned int>(N)), block(kLeNetThreads);
  if (save.c1 != nullptr) {
    launch(lenet5_forward_kernel<T, true>, grid, block, images, p, logits, save);
  } else {
    launch(lenet5_forward_kernel<T, false>, grid, block, images, p, logits, save);
  }
}

}  // namespace cuda
}  // namespace lenet_ext
