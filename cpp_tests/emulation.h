// CUDA's device-side vocabulary for the CPU, so that the kernel headers of csrc/cuda compile as
// plain C++ and run in the emulator (emulation_runtime.cpp): a block's threads are fibers on one
// host thread, switched at each __syncthreads(); blocks run one after another.
//
// What the emulator checks beyond the results (tests/test_cuda_emulated.py):
// - the order the threads of a block run between two barriers: by index, reversed or shuffled
//   (set_thread_order); a kernel whose result depends on it has a race;
// - every __syncthreads() is reached by every thread of the block, at the same call site
//   (a barrier in divergent code, or threads that returned while others wait, is an error);
// - shared memory (LENET_SHARED) is fresh for each block and filled with 0xFF bytes (NaN in
//   float and double, -1 in integers), and every access to it is checked, through the compiler's
//   thread-sanitizer instrumentation (-fsanitize=thread, with this runtime's hooks in place of
//   libtsan): a byte read before any thread of the block wrote it is an error, and so is a byte
//   written by one thread and read or written by another between the same two barriers (a race).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
extern dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace emulation {

enum class Order { index, reversed, shuffled };

// Runs body as one block of `threads` threads, to completion; throws std::runtime_error naming
// the first broken rule (divergent barrier, race, uninitialised shared read).
void run_block(unsigned int threads, const std::function<void()>& body);
// The barrier: the calling thread waits here until every thread of the block has reached it.
void barrier(const char* file, int line);
// This block's shared array for a declaration site (the same address for every thread).
void* shared_memory(const void* site, size_t bytes, size_t align);

void set_thread_order(Order order, uint64_t seed);
// Checks of shared memory accesses: races, and reads of bytes not written in the block.
void set_shared_checks(bool races, bool uninitialised);

}  // namespace emulation

#define __syncthreads() ::emulation::barrier(__FILE__, __LINE__)
template <typename T>
inline T __ldg(const T* p) {
  return *p;
}

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define LENET_SHARED(T, name, dims)                       \
  using name##_shared_t = T dims;                         \
  static const char name##_shared_site = 0;               \
  name##_shared_t& name = *static_cast<name##_shared_t*>( \
      ::emulation::shared_memory(&name##_shared_site, sizeof(name##_shared_t), alignof(name##_shared_t)))
