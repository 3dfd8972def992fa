// LeNet-5's training backward on CUDA (lenet5_train_kernels.cu), in four launches.
//
// With g_L the gradient at layer L's pre-activation and y its saved output:
//   1. one block per image, the chain in shared memory (the weights through the read-only cache):
//        g6 = (dlogits @ W_out) * y6 (1 - y6)                           (84)
//        g5 = (g6 @ W_f6) * y5 (1 - y5)                                 (120)
//        ds4 = g5 @ W_c5                                                (400 = 16 x 5 x 5)
//        g3[o, h, w] = ds4[o, h/2, w/2] / 4 * y3 (1 - y3)                (16 x 10 x 10, the pooling's adjoint)
//        ds2[c, h, w] = sum_{o,i,j} g3[o, h - i, w - j] W_c3[o, c, i, j]  (6 x 14 x 14, gathered)
//        g1[o, h, w] = ds2[o, h/2, w/2] / 4 * y1 (1 - y1)                (6 x 28 x 28)
//        dx[h, w] = sum_{o,i,j} g1[o, h + 2 - i, w + 2 - j] W_c1[o, 0, i, j]   (if the images need it)
//      g1, g3, g5, g6 go to global scratch for the parameter gradients.
//   2. the dense layers' parameters, one block per output row (out, f6, c5): each thread owns a
//      column and sums its products over the batch in order; the bias is the column of ones.
//   3. the convolutions' parameters (c1, c3): one block per (parameter, chunk of kChunk images),
//      each a fixed-order block sum over its chunk's (image, position) pairs, into a partial;
//   4. one thread per c1/c3 parameter adds its chunks' partials in chunk order.
// No atomics anywhere: the same inputs give bitwise the same gradients, run after run.
//
// The launch sequence is a template over the launcher, so that cpp_tests/cuda_emulation.cpp runs
// exactly these launches on the CPU in tests.
#pragma once

#include <cstdint>

#include "device.cuh"
#include "lenet5_kernels.cuh"

namespace lenet_ext {
namespace cuda {

template <typename T>
__global__ void __launch_bounds__(kLeNetThreads)
    lenet5_backward_chain_kernel(const T* __restrict__ glogits, int64_t classes, const T* __restrict__ c1,
                                 const T* __restrict__ c3, const T* __restrict__ c5, const T* __restrict__ f6,
                                 const T* __restrict__ c1w, const T* __restrict__ c3w, const T* __restrict__ c5w,
                                 const T* __restrict__ f6w, const T* __restrict__ outw, T* __restrict__ g1,
                                 T* __restrict__ g3, T* __restrict__ g5, T* __restrict__ g6, T* __restrict__ gx) {
  LENET_SHARED(T, d6, [84]);
  LENET_SHARED(T, d5, [120]);
  LENET_SHARED(T, d4, [400]);
  LENET_SHARED(T, d3, [1600]);
  LENET_SHARED(T, d2, [1176]);
  const int64_t n = blockIdx.x;
  const int tid = threadIdx.x;
  const T* go = glogits + n * classes;
  for (int k = tid; k < 84; k += blockDim.x) {
    T acc = 0;
    for (int64_t j = 0; j < classes; ++j) acc += go[j] * ro(outw + j * 84 + k);
    const T y = f6[n * 84 + k];
    d6[k] = acc * y * (T(1) - y);
    g6[n * 84 + k] = d6[k];
  }
  __syncthreads();
  for (int q = tid; q < 120; q += blockDim.x) {
    T acc = 0;
    for (int j = 0; j < 84; ++j) acc += d6[j] * ro(f6w + j * 120 + q);
    const T y = c5[n * 120 + q];
    d5[q] = acc * y * (T(1) - y);
    g5[n * 120 + q] = d5[q];
  }
  __syncthreads();
  for (int r = tid; r < 400; r += blockDim.x) {
    T acc = 0;
    for (int q = 0; q < 120; ++q) acc += d5[q] * ro(c5w + q * 400 + r);
    d4[r] = acc;
  }
  __syncthreads();
  for (int e = tid; e < 1600; e += blockDim.x) {
    const int o = e / 100, oh = (e % 100) / 10, ow = e % 10;
    const T y = c3[n * 1600 + e];
    d3[e] = d4[o * 25 + (oh / 2) * 5 + ow / 2] * T(0.25) * y * (T(1) - y);
    g3[n * 1600 + e] = d3[e];
  }
  __syncthreads();
  for (int e = tid; e < 1176; e += blockDim.x) {
    const int c = e / 196, ih = (e % 196) / 14, iw = e % 14;
    T acc = 0;
    for (int o = 0; o < 16; ++o) {
      const T* w = c3w + (o * 6 + c) * 25;
      for (int i = 0; i < 5; ++i) {
        const int oh = ih - i;
        if (oh < 0 || oh >= 10) continue;
        for (int j = 0; j < 5; ++j) {
          const int ow = iw - j;
          if (ow >= 0 && ow < 10) acc += d3[o * 100 + oh * 10 + ow] * ro(w + i * 5 + j);
        }
      }
    }
    d2[e] = acc;
  }
  __syncthreads();
  T* g1n = g1 + n * 4704;
  for (int e = tid; e < 4704; e += blockDim.x) {
    const int o = e / 784, oh = (e % 784) / 28, ow = e % 28;
    const T y = c1[n * 4704 + e];
    g1n[e] = d2[o * 196 + (oh / 2) * 14 + ow / 2] * T(0.25) * y * (T(1) - y);
  }
  if (gx == nullptr) return;  // the same for every thread of the block
  __syncthreads();            // this block's g1 writes are visible to the whole block after it
  for (int e = tid; e < 784; e += blockDim.x) {
    const int ih = e / 28, iw = e % 28;
    T acc = 0;
    for (int o = 0; o < 6; ++o) {
      for (int i = 0; i < 5; ++i) {
        const int oh = ih + 2 - i;
        if (oh < 0 || oh >= 28) continue;
        for (int j = 0; j < 5; ++j) {
          const int ow = iw + 2 - j;
          if (ow >= 0 && ow < 28) acc += g1n[o * 784 + oh * 28 + ow] * ro(c1w + o * 25 + i * 5 + j);
        }
      }
    }
    gx[n * 784 + e] = acc;
  }
}

// Dense layers' weight and bias gradients: block b is row j of the output layer (b < classes), of
// f6 (next 84) or of c5 (next 120); column k < K sums g[n, j] * in[n, k] over the batch in order,
// column K sums g[n, j] (the bias).
template <typename T>
__global__ void lenet5_dense_grads_kernel(int64_t N, int64_t classes, const T* __restrict__ glogits,
                                          const T* __restrict__ f6, const T* __restrict__ g6, const T* __restrict__ c5,
                                          const T* __restrict__ g5, const T* __restrict__ s4, T* __restrict__ gw_out,
                                          T* __restrict__ gb_out, T* __restrict__ gw_f6, T* __restrict__ gb_f6,
                                          T* __restrict__ gw_c5, T* __restrict__ gb_c5) {
  int64_t j = blockIdx.x, rows, K;
  const T *g, *in;
  T *gw, *gb;
  if (j < classes) {
    rows = classes, K = 84, g = glogits, in = f6, gw = gw_out, gb = gb_out;
  } else if (j < classes + 84) {
    j -= classes;
    rows = 84, K = 120, g = g6, in = c5, gw = gw_f6, gb = gb_f6;
  } else {
    j -= classes + 84;
    rows = 120, K = 400, g = g5, in = s4, gw = gw_c5, gb = gb_c5;
  }
  for (int64_t k = threadIdx.x; k <= K; k += blockDim.x) {
    T acc = 0;
    if (k < K) {
      for (int64_t n = 0; n < N; ++n) acc += g[n * rows + j] * in[n * K + k];
      gw[j * K + k] = acc;
    } else {
      for (int64_t n = 0; n < N; ++n) acc += g[n * rows + j];
      gb[j] = acc;
    }
  }
}

// Partial sums over images [chunk * kChunk, +kChunk) of the convolutions' parameter gradients:
// parameter e is c1's weight (o, i, j) for e < 150, c1's bias for e < 156, c3's weight (o, c, i, j)
// for e < 2556, c3's bias below kConvParams.
template <typename T>
__global__ void lenet5_conv_partials_kernel(int64_t N, const T* __restrict__ images, const T* __restrict__ g1,
                                            const T* __restrict__ s2, const T* __restrict__ g3,
                                            T* __restrict__ partial) {
  const int64_t e = blockIdx.x, chunk = blockIdx.y;
  const int64_t n0 = chunk * kChunk, n1 = n0 + kChunk < N ? n0 + kChunk : N;
  T acc = 0;
  if (e < 156) {
    const bool bias = e >= 150;
    const int o = bias ? static_cast<int>(e - 150) : static_cast<int>(e / 25);
    const int i = static_cast<int>(e % 25) / 5, j = static_cast<int>(e % 5);
    const int64_t items = (n1 - n0) * 784;
    for (int64_t t = threadIdx.x; t < items; t += blockDim.x) {
      const int64_t n = n0 + t / 784;
      const int q = static_cast<int>(t % 784), oh = q / 28, ow = q % 28;
      const T gv = g1[(n * 6 + o) * 784 + q];
      if (bias) {
        acc += gv;
      } else {
        const int ih = oh + i - 2, iw = ow + j - 2;
        if (ih >= 0 && ih < 28 && iw >= 0 && iw < 28) acc += gv * images[n * 784 + ih * 28 + iw];
      }
    }
  } else {
    const int64_t e3 = e - 156;
    const bool bias = e3 >= 2400;
    const int o = bias ? static_cast<int>(e3 - 2400) : static_cast<int>(e3 / 150);
    const int c = static_cast<int>(e3 % 150) / 25, i = static_cast<int>(e3 % 25) / 5, j = static_cast<int>(e3 % 5);
    const int64_t items = (n1 - n0) * 100;
    for (int64_t t = threadIdx.x; t < items; t += blockDim.x) {
      const int64_t n = n0 + t / 100;
      const int q = static_cast<int>(t % 100), oh = q / 10, ow = q % 10;
      const T gv = g3[(n * 16 + o) * 100 + q];
      acc += bias ? gv : gv * s2[(n * 6 + c) * 196 + (oh + i) * 14 + (ow + j)];
    }
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[chunk * kConvParams + e] = acc;
}

template <typename T>
__global__ void lenet5_conv_reduce_kernel(const T* __restrict__ partial, int64_t chunks, T* __restrict__ gw1,
                                          T* __restrict__ gb1, T* __restrict__ gw3, T* __restrict__ gb3) {
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= kConvParams) return;
  T acc = 0;
  for (int64_t c = 0; c < chunks; ++c) acc += partial[c * kConvParams + e];
  if (e < 150) {
    gw1[e] = acc;
  } else if (e < 156) {
    gb1[e - 150] = acc;
  } else if (e < 2556) {
    gw3[e - 156] = acc;
  } else {
    gb3[e - 2556] = acc;
  }
}

// launch(kernel, grid, block, args...) runs one kernel: on the current stream (lenet5_train_kernels.cu) or
// on the CPU (the emulator).
template <typename T, typename Launch>
void lenet5_backward(const LeNet5Backward<T>& b, Launch&& launch) {
  const int64_t chunks = lenet5_backward_chunks(b.N);
  if (b.N > 0) {
    launch(lenet5_backward_chain_kernel<T>, dim3(static_cast<unsigned int>(b.N)), dim3(kLeNetThreads), b.glogits,
           b.classes, b.c1, b.c3, b.c5, b.f6, b.c1w, b.c3w, b.c5w, b.f6w, b.outw, b.g1, b.g3, b.g5, b.g6, b.gx);
  }
  launch(lenet5_dense_grads_kernel<T>, dim3(static_cast<unsigned int>(b.classes + 84 + 120)), dim3(kThreads), b.N,
         b.classes, b.glogits, b.f6, b.g6, b.c5, b.g5, b.s4, b.gwo, b.gbo, b.gw6, b.gb6, b.gw5, b.gb5);
  if (b.N > 0) {
    launch(lenet5_conv_partials_kernel<T>,
           dim3(static_cast<unsigned int>(kConvParams), static_cast<unsigned int>(chunks)), dim3(kThreads), b.N,
           b.images, b.g1, b.s2, b.g3, b.partial);
  }
  launch(lenet5_conv_reduce_kernel<T>, dim3(blocks_for(kConvParams)), dim3(kThreads), b.partial, chunks, b.gw1, b.gb1,
         b.gw3, b.gb3);
}

}  // namespace cuda
}  // namespace lenet_ext
