// Helpers shared by the CPU op files: the split of a batch into chunks that torch's threads
// take in turn (a split set by the batch size alone), the in-order reduction of per-chunk
// partial gradients, and the dense layers' backward. (The arithmetic is in kernels_impl.h.)
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels.h"
#include "parallel.h"

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

// This thread's scratch of at least n values, kept for the thread's life and reused by every call
// (the fused inference op: no allocation per call once a thread has run it). Memory is bounded:
// one buffer of the largest size asked for, per thread. Not for code that can nest on one thread.
template <typename T>
inline T* thread_scratch(int64_t n) {
  thread_local std::vector<T> buffer;
  if (static_cast<int64_t>(buffer.size()) < n) buffer.assign(n > 0 ? n : 1, T(0));
  return buffer.data();
}

// Number of chunks a batch of n images (or rows) is split into: at most kMaxChunks, at most one per
// image. It depends on n only, not on the thread count, so that per-chunk partial gradients added
// in chunk order give the same bits with any number of threads.
constexpr int64_t kMaxChunks = 16;
inline int64_t num_chunks(int64_t n) { return std::max<int64_t>(1, std::min<int64_t>(n, kMaxChunks)); }

// For a dense layer over n rows of a (K -> O) product: one chunk per thread (at most one per row),
// since its rows are independent (no partial sums) and each chunk streams the whole weight through
// the cache; one chunk in all below 2^17 multiply-adds (a few microseconds, less than waking the
// other threads: LeNet's output layer at batch 64).
inline int64_t dense_chunks(int64_t n, int64_t K, int64_t O) {
  if (n * K * O < (int64_t(1) << 17)) return 1;
  return std::max<int64_t>(1, std::min<int64_t>(n, num_threads()));
}

// The chunks of [0, n), handed out in order to whichever thread asks next: chunk c is
// [n * c / chunks, n * (c + 1) / chunks).
class ChunkQueue {
 public:
  ChunkQueue(int64_t n, int64_t chunks) : n_(n), chunks_(chunks) {}
  // The next chunk (its index, begin and end); false when none is left.
  bool pop(int64_t& chunk, int64_t& begin, int64_t& end) {
    chunk = next_.fetch_add(1, std::memory_order_relaxed);
    if (chunk >= chunks_) return false;
    begin = n_ * chunk / chunks_;
    end = n_ * (chunk + 1) / chunks_;
    return true;
  }

 private:
  const int64_t n_, chunks_;
  std::atomic<int64_t> next_{0};
};

// Runs worker(queue) once on each of up to `chunks` threads of torch's pool; each worker pops
// chunks until none is left (setting up its scratch once, not per chunk). A thread that starts late
// (woken from sleep, or descheduled on a busy machine) takes fewer chunks instead of holding the
// others at the end, as a fixed split of the batch per thread would.
template <typename Worker>
inline void parallel_chunks(int64_t n, int64_t chunks, const Worker& worker) {
  ChunkQueue queue(n, chunks);
  const int64_t threads = std::min<int64_t>(chunks, num_threads());
  if (threads <= 1 || in_parallel_region()) return worker(queue);
  parallel_for(0, threads, 1, [&](int64_t, int64_t) { worker(queue); });
}

// Adds per-chunk partials laid out as [dw (nw values) | db (nb values)] per chunk, in chunk
// order, into dw and db (either may be null when that gradient is not wanted).
template <typename T>
inline void reduce_partials(const T* partial, int64_t chunks, int64_t nw, int64_t nb, T* dw, T* db) {
  const int64_t part_size = nw + nb;
  auto reduce = [&](int64_t offset, int64_t count, T* dst) {
    if (!dst) return;
    for (int64_t i = 0; i < count; ++i) dst[i] = partial[offset + i];
    for (int64_t c = 1; c < chunks; ++c) {  // each value's sum in chunk order; vectorized over i
      const T* src = partial + c * part_size + offset;
      for (int64_t i = 0; i < count; ++i) dst[i] += src[i];
    }
  };
  reduce(0, nw, dw);
  reduce(nw, nb, db);
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
  parallel_chunks(M, dense_chunks(M, K, O), [&](ChunkQueue& queue) {
    for (int64_t c, m0, m1; queue.pop(c, m0, m1);) {
      if (buffer) {
        T* gb = buffer.get();
        for (int64_t i = m0 * O; i < m1 * O; ++i) {
          const T up = (gy ? gy[i] : T(0)) + (gy2 ? gy2[i] : T(0));
          gb[i] = y ? up * y[i] * (T(1) - y[i]) : up;
        }
      }
      if (dx) k.dense_input_grad(m1 - m0, K, O, g + m0 * O, w, dx + m0 * K);
    }
  });
  if (!dw && !db) return;
  // Slices of at least 16 outputs, and one thread for small layers (a parallel region costs more).
  const int64_t slices =
      M * K * O < (int64_t(1) << 16) ? 1 : std::max<int64_t>(1, std::min<int64_t>(num_threads(), O / 16));
  parallel_chunks(O, slices, [&](ChunkQueue& queue) {
    for (int64_t c, o0, o1; queue.pop(c, o0, o1);)
      k.dense_weight_grad(M, K, o1 - o0, g + o0, O, x, dw ? dw + o0 * K : nullptr, db ? db + o0 : nullptr);
  });
}

}  // namespace cpu
}  // namespace lenet_ext
