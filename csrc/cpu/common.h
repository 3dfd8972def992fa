// Helpers shared by the CPU kernels: the sigmoid, and a deterministic split of
// the batch into per-thread chunks.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "gemm.h"

namespace lenet_ext {
namespace cpu {

template <typename T>
inline T sigmoid(T z) {
  return T(1) / (T(1) + std::exp(-z));
}

// exp(x) for a vector of floats: Cephes' expf (range reduction by ln 2, degree-6
// polynomial, 2^n built in the exponent bits), within 2 ulp of expf on [-87.3, 88.3];
// inputs are clamped to that range, NaN is passed through.
inline Vec<float> exp_vec(Vec<float> x) {
  using VecI = __attribute__((vector_size(kVecBytes))) int32_t;
  const Vec<float> nan_mask_src = x;
  x = x > splat(88.3762626647949f) ? splat(88.3762626647949f) : x;
  x = x < splat(-87.3365447505531f) ? splat(-87.3365447505531f) : x;
  Vec<float> fx = x * 1.44269504088896341f + 0.5f;
  Vec<float> t = __builtin_convertvector(__builtin_convertvector(fx, VecI), Vec<float>);
  fx = t > fx ? t - 1.0f : t;  // floor
  x = x - fx * 0.693359375f + fx * 2.12194440e-4f;
  const Vec<float> z = x * x;
  Vec<float> y = splat(1.9875691500e-4f);
  y = y * x + 1.3981999507e-3f;
  y = y * x + 8.3334519073e-3f;
  y = y * x + 4.1665795894e-2f;
  y = y * x + 1.6666665459e-1f;
  y = y * x + 5.0000001201e-1f;
  y = y * z + x + 1.0f;
  VecI bits = (__builtin_convertvector(fx, VecI) + 127) << 23;
  Vec<float> pow2n;
  std::memcpy(&pow2n, &bits, sizeof(pow2n));
  y = y * pow2n;
  return nan_mask_src != nan_mask_src ? nan_mask_src : y;
}

// p[i] = sigmoid(p[i] + bias) for n values (bias may be 0): vectorized for float.
template <typename T>
inline void sigmoid_bias_inplace(T* p, int64_t n, T bias) {
  int64_t i = 0;
  if constexpr (std::is_same_v<T, float>) {
    constexpr int L = kVecLen<float>;
    for (; i + L <= n; i += L) {
      const Vec<float> z = load(p + i) + bias;
      store(p + i, 1.0f / (1.0f + exp_vec(-z)));
    }
  }
  for (; i < n; ++i) p[i] = sigmoid(p[i] + bias);
}

// Number of chunks the batch is split into: one per thread, at most one per sample.
inline int64_t num_chunks(int64_t n) {
  return std::max<int64_t>(1, std::min<int64_t>(n, at::get_num_threads()));
}

// Runs fn(chunk, begin, end) over `chunks` contiguous slices of [0, n) on torch's
// thread pool. The slices depend only on n and chunks, so per-chunk partial sums
// reduced in chunk order give the same bits on every run.
template <typename F>
inline void parallel_chunks(int64_t n, int64_t chunks, const F& fn) {
  at::parallel_for(0, chunks, 1, [&](int64_t first, int64_t last) {
    for (int64_t c = first; c < last; ++c) fn(c, n * c / chunks, n * (c + 1) / chunks);
  });
}

// A dense layer on rows [0, rows) of a chunk: y = act(x w^T + b), x (rows, K), w (O, K), y (rows, O).
// Serves linear and a convolution whose window covers its whole input (LeNet's c5).
template <typename T>
inline void dense_forward_rows(int64_t rows, int64_t K, int64_t O, const T* x, const T* w, const T* b, T* y,
                               bool apply_sigmoid) {
  gemm_abt(rows, O, K, x, K, w, K, y, O, /*accumulate=*/false);
  for (int64_t m = 0; m < rows; ++m) {
    T* ym = y + m * O;
    for (int64_t o = 0; o < O; ++o) {
      const T z = ym[o] + (b ? b[o] : T(0));
      ym[o] = apply_sigmoid ? sigmoid(z) : z;
    }
  }
}

// Its backward from g = dL/d(pre-activation), (rows, O): dx (rows, K) written, dw (O, K) and
// db (O) added to; any of the three may be null when not wanted.
template <typename T>
inline void dense_backward_rows(int64_t rows, int64_t K, int64_t O, const T* g, const T* x, const T* w, T* dx,
                                T* dw, T* db) {
  if (dx) gemm_ab(rows, K, O, g, O, w, K, dx, K, /*accumulate=*/false);
  if (dw) gemm_atb_acc(O, K, rows, g, O, x, K, dw, K);
  if (db) {
    for (int64_t m = 0; m < rows; ++m)
      for (int64_t o = 0; o < O; ++o) db[o] += g[m * O + o];
  }
}

// Adds per-chunk partials laid out as [dw (nw values) | db (nb values)] per chunk, in chunk
// order, into dw and db (either may be null when that gradient is not wanted).
template <typename T>
inline void reduce_partials(const T* partial, int64_t chunks, int64_t nw, int64_t nb, T* dw, T* db) {
  const int64_t part_size = nw + nb;
  for (int64_t i = 0; i < part_size; ++i) {
    T* dst = i < nw ? (dw ? dw + i : nullptr) : (db ? db + (i - nw) : nullptr);
    if (!dst) continue;
    T acc = 0;
    for (int64_t c = 0; c < chunks; ++c) acc += partial[c * part_size + i];
    *dst = acc;
  }
}

}  // namespace cpu
}  // namespace lenet_ext
