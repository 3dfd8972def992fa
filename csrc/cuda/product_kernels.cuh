// A tiled matrix product for the dense layers' second-generation kernels (linear_kernels.cu, and the
// convolution whose window covers its whole input, c5, in conv_kernels.cuh):
//
//   C[m, n] = act(sum_k A(m, k) * B(k, n) + bias[n]),   C (M, N) row-major,
//   A(m, k) = kTransA ? A[k * lda + m] : A[m * lda + k],   B(k, n) = kTransB ? B[n * ldb + k] : B[k * ldb + n]
//
// One block of 256 threads per 16 x 16 tile of C; the k loop runs over 16-wide tiles of A and B
// staged in shared memory (coalesced loads, each value read once per block); each output is one
// thread's fixed-order sum: deterministic, no atomics.
#pragma once

#include <cstdint>

#include "device.cuh"

namespace lenet_ext {
namespace cuda {

constexpr int kTile = 16;  // kTile^2 == kThreads

template <typename T, bool kTransA, bool kTransB>
__global__ void tiled_product_kernel(const T* __restrict__ A, const T* __restrict__ B, T* __restrict__ C, int64_t M,
                                     int64_t N, int64_t K, int64_t lda, int64_t ldb, const T* __restrict__ bias,
                                     bool apply_sigmoid) {
  LENET_SHARED(T, As, [kTile][kTile + 1]);
  LENET_SHARED(T, Bs, [kTile][kTile + 1]);
  const int tx = threadIdx.x % kTile, ty = threadIdx.x / kTile;
  // Rows (the batch, for the layers' forward and input gradient) on the grid's x dimension, whose
  // limit is 2^31 - 1 blocks; columns (features) on y.
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kTile + ty;
  const int64_t col = static_cast<int64_t>(blockIdx.y) * kTile + tx;
  // The tiles are loaded by (ty, tx) reading consecutive addresses along the stored rows.
  const int64_t a_row = static_cast<int64_t>(blockIdx.x) * kTile + (kTransA ? tx : ty);
  const int64_t b_col = static_cast<int64_t>(blockIdx.y) * kTile + (kTransB ? ty : tx);
  T acc = 0;
  for (int64_t k0 = 0; k0 < K; k0 += kTile) {
    if (kTransA) {  // A stored (K, M): read along m
      const int64_t k = k0 + ty;
      As[tx][ty] = (a_row < M && k < K) ? A[k * lda + a_row] : T(0);
    } else {
      const int64_t k = k0 + tx;
      As[ty][tx] = (a_row < M && k < K) ? A[a_row * lda + k] : T(0);
    }
    if (kTransB) {  // B stored (N, K): read along k
      const int64_t k = k0 + tx;
      Bs[tx][ty] = (b_col < N && k < K) ? B[b_col * ldb + k] : T(0);
    } else {
      const int64_t k = k0 + ty;
      Bs[ty][tx] = (b_col < N && k < K) ? B[k * ldb + b_col] : T(0);
    }
    __syncthreads();
    for (int kk = 0; kk < kTile; ++kk) acc += As[ty][kk] * Bs[kk][tx];
    __syncthreads();
  }
  if (row < M && col < N) {
    const T v = bias ? acc + bias[col] : acc;
    C[row * N + col] = apply_sigmoid ? sigmoid(v) : v;
  }
}

inline dim3 product_grid(int64_t M, int64_t N) {
  return dim3(static_cast<unsigned int>((M + kTile - 1) / kTile), static_cast<unsigned int>((N + kTile - 1) / kTile));
}

// db[o] = sum_m g[m, o], one thread per o summing over m in order (coalesced across o).
template <typename T>
__global__ void column_sum_kernel(const T* __restrict__ g, T* __restrict__ out, int64_t M, int64_t O) {
  const int64_t o = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (o >= O) return;
  T acc = 0;
  for (int64_t m = 0; m < M; ++m) acc += g[m * O + o];
  out[o] = acc;
}

// The dense layer x (M, K) -> y (M, O) with weight (O, K), as products on the launcher:
// forward y = act(x W^T + b); backward from g (M, O) = dy [* y (1 - y)]: dx = g W, dW = g^T x,
// db = column sums of g. A null output is not computed.
template <typename T, typename Launch>
void dense_forward(const T* x, const T* w, const T* b, T* y, int64_t M, int64_t K, int64_t O, bool apply_sigmoid,
                   Launch&& launch) {
  if (M == 0 || O == 0) return;
  launch(tiled_product_kernel<T, false, true>, product_grid(M, O), dim3(kThreads), x, w, y, M, O, K, K, K, b,
         apply_sigmoid);
}

template <typename T, typename Launch>
void dense_backward(const T* g, const T* x, const T* w, T* dx, T* dw, T* db, int64_t M, int64_t K, int64_t O,
                    Launch&& launch) {
  if (dx != nullptr && M > 0 && K > 0) {
    launch(tiled_product_kernel<T, false, false>, product_grid(M, K), dim3(kThreads), g, w, dx, M, K, O, O, K,
           static_cast<const T*>(nullptr), false);
  }
  if (dw != nullptr && O > 0 && K > 0) {
    launch(tiled_product_kernel<T, true, false>, product_grid(O, K), dim3(kThreads), g, x, dw, O, K, M, O, K,
           static_cast<const T*>(nullptr), false);
  }
  if (db != nullptr && O > 0) launch(column_sum_kernel<T>, dim3(blocks_for(O)), dim3(kThreads), g, db, M, O);
}

}  // namespace cuda
}  // namespace lenet_ext
