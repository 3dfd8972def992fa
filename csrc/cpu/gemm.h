// Small dense loops shared by the CPU kernels: the three matrix products that a
// convolution (as im2row + product) and a linear layer need, forward and backward.
// All matrices are row-major with an explicit leading dimension. The loops keep
// the innermost index contiguous so the compiler vectorizes them
// (`#pragma omp simd`, built with -fopenmp-simd; no -ffast-math).
#pragma once

#include <cstdint>

namespace lenet_ext {
namespace cpu {

// C[m, n] = sum_k A[m, k] * B[n, k]          A: (M, K), B: (N, K), C: (M, N); overwrites C.
// Dot-product form: the reduction runs along contiguous rows of both A and B.
template <typename T>
inline void gemm_abt(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb, T* C,
                     int64_t ldc) {
  for (int64_t m = 0; m < M; ++m) {
    const T* a = A + m * lda;
    T* c = C + m * ldc;
    int64_t n = 0;
    for (; n + 4 <= N; n += 4) {
      const T* b0 = B + n * ldb;
      const T* b1 = b0 + ldb;
      const T* b2 = b1 + ldb;
      const T* b3 = b2 + ldb;
      T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
      for (int64_t k = 0; k < K; ++k) {
        s0 += a[k] * b0[k];
        s1 += a[k] * b1[k];
        s2 += a[k] * b2[k];
        s3 += a[k] * b3[k];
      }
      c[n] = s0;
      c[n + 1] = s1;
      c[n + 2] = s2;
      c[n + 3] = s3;
    }
    for (; n < N; ++n) {
      const T* b = B + n * ldb;
      T s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t k = 0; k < K; ++k) s += a[k] * b[k];
      c[n] = s;
    }
  }
}

// C[m, n] (+)= sum_k A[m, k] * B[k, n]       A: (M, K), B: (K, N), C: (M, N).
// Axpy form: each C row is built from contiguous rows of B. Overwrites C unless `accumulate`.
template <typename T>
inline void gemm_ab(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb, T* C,
                    int64_t ldc, bool accumulate) {
  for (int64_t m = 0; m < M; ++m) {
    const T* a = A + m * lda;
    T* c = C + m * ldc;
    if (!accumulate) {
      for (int64_t n = 0; n < N; ++n) c[n] = 0;
    }
    for (int64_t k = 0; k < K; ++k) {
      const T av = a[k];
      const T* b = B + k * ldb;
#pragma omp simd
      for (int64_t n = 0; n < N; ++n) c[n] += av * b[n];
    }
  }
}

// C[m, n] += sum_k A[k, m] * B[k, n]         A: (K, M), B: (K, N), C: (M, N); always accumulates.
template <typename T>
inline void gemm_atb_acc(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb, T* C,
                         int64_t ldc) {
  for (int64_t k = 0; k < K; ++k) {
    const T* a = A + k * lda;
    const T* b = B + k * ldb;
    for (int64_t m = 0; m < M; ++m) {
      const T av = a[m];
      T* c = C + m * ldc;
#pragma omp simd
      for (int64_t n = 0; n < N; ++n) c[n] += av * b[n];
    }
  }
}

}  // namespace cpu
}  // namespace lenet_ext
