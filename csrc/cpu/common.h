// Helpers shared by the CPU op files: a deterministic split of the batch into per-thread
// chunks, and the in-order reduction of per-chunk partial gradients. (The arithmetic is in
// kernels_impl.h.)
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <memory>

#include "kernels.h"

namespace lenet_ext {
namespace cpu {

// A thread's scratch: uninitialized (the kernels write every value before reading it), so that
// a batch-1 call does not spend its time zeroing buffers.
template <typename T>
struct Scratch {
  explicit Scratch(int64_t n) : data_(new T[n > 0 ? n : 1]) {}
  T* data() { return data_.get(); }

 private:
  std::unique_ptr<T[]> data_;
};

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

// The backward of a dense layer (a linear layer, or a convolution whose window covers its whole
// input) over M rows, x (M, K), w (O, K): g = (gy + gy2) * y * (1 - y) (each term when not null;
// y null: no sigmoid) and dx = g w in chunks of rows; then dw = g^T x and db in slices of the O
// outputs, each summed over all M rows in order. No per-thread partial gradients to allocate,
// zero and add (for c5 that was 2 x 48k values per call), and the same bits for any thread count.
template <typename T>
void dense_backward(const CpuKernels<T>& k, int64_t M, int64_t K, int64_t O, const T* gy, const T* gy2, const T* y,
                    const T* x, const T* w, T* dx, T* dw, T* db) {
  std::unique_ptr<T[]> buffer;
  const T* g = gy;  // gy itself when it is the whole gradient
  if (gy2 || y || !gy) {
    buffer.reset(new T[M * O > 0 ? M * O : 1]);
    g = buffer.get();
  }
  parallel_chunks(M, num_chunks(M), [&](int64_t, int64_t m0, int64_t m1) {
    if (buffer) {
      T* gb = buffer.get();
      for (int64_t i = m0 * O; i < m1 * O; ++i) {
        const T up = (gy ? gy[i] : T(0)) + (gy2 ? gy2[i] : T(0));
        gb[i] = y ? up * y[i] * (T(1) - y[i]) : up;
      }
    }
    if (dx) k.dense_input_grad(m1 - m0, K, O, g + m0 * O, w, dx + m0 * K);
  });
  if (!dw && !db) return;
  // Slices of at least 16 outputs, and one thread for small layers (a parallel region costs more).
  const int64_t slices =
      M * K * O < (int64_t(1) << 16) ? 1 : std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), O / 16));
  parallel_chunks(O, slices, [&](int64_t, int64_t o0, int64_t o1) {
    k.dense_weight_grad(M, K, o1 - o0, g + o0, O, x, dw ? dw + o0 * K : nullptr, db ? db + o0 : nullptr);
  });
}

}  // namespace cpu
}  // namespace lenet_ext
