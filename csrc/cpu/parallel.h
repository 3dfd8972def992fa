// The CPU ops' threads. With OpenMP (LENET_EXT_OPENMP, set by the build where the compiler has
// it), torch's at::parallel_for, whose loop in torch's headers is an OpenMP loop on torch's own
// threads. Without it (Apple's clang, a clang with no libomp), torch's parallel header cannot be
// included at all (it includes omp.h), and the loops below run serially on the calling thread:
// the same chunks in the same order, so the results have the same bits, on one core.
#pragma once

#include <cstdint>

#if defined(LENET_EXT_OPENMP)
#include <ATen/Parallel.h>
#endif

namespace lenet_ext {
namespace cpu {

#if defined(LENET_EXT_OPENMP)
inline int64_t num_threads() { return at::get_num_threads(); }
inline bool in_parallel_region() { return at::in_parallel_region(); }
template <typename F>
inline void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f) {
  at::parallel_for(begin, end, grain, f);
}
#else
inline int64_t num_threads() { return 1; }
inline bool in_parallel_region() { return false; }
template <typename F>
inline void parallel_for(int64_t begin, int64_t end, int64_t /*grain*/, const F& f) {
  if (begin < end) f(begin, end);
}
#endif

}  // namespace cpu
}  // namespace lenet_ext
