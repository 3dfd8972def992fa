// Helpers shared by the CPU op files: a deterministic split of the batch into per-thread
// chunks, and the in-order reduction of per-chunk partial gradients. (The arithmetic is in
// kernels_impl.h.)
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <memory>

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

}  // namespace cpu
}  // namespace lenet_ext
