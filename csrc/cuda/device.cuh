// Device helpers shared by the CUDA kernels, free of host-runtime headers so that the kernel
// headers (conv_kernels.cuh, lenet5_kernels.cuh, lenet5_backward_kernels.cuh) can also be compiled
// for the CPU by the emulator in cpp_tests/cuda_emulation.cpp, which runs them in tests without a GPU.
#pragma once

#include <cstdint>

// A block's shared array: LENET_SHARED(T, name, [n]) declares `__shared__ T name[n]`. Every kernel
// declares its shared memory through it, so that the emulator can give each block fresh memory
// (filled with NaN, every other byte pattern too) and check every access to it for races and
// reads of bytes no thread of the block has written.
#ifndef LENET_SHARED
#define LENET_SHARED(T, name, dims) __shared__ T name dims
#endif

namespace lenet_ext {
namespace cuda {

constexpr int kThreads = 256;

// Blocks for one thread per element of an n-element output.
inline unsigned int blocks_for(int64_t n) { return static_cast<unsigned int>((n + kThreads - 1) / kThreads); }

template <typename T>
__device__ __forceinline__ T sigmoid(T z) {
  return T(1) / (T(1) + exp(-z));
}

// A read through the read-only data cache (weights every block reads).
template <typename T>
__device__ __forceinline__ T ro(const T* p) {
  return __ldg(p);
}

// Sum of one value per thread of a kThreads-wide block, in a fixed tree order (deterministic);
// the result is valid in thread 0.
template <typename T>
__device__ __forceinline__ T block_sum(T value) {
  LENET_SHARED(T, partial, [kThreads]);
  partial[threadIdx.x] = value;
  __syncthreads();
  for (int width = kThreads / 2; width > 0; width /= 2) {
    if (threadIdx.x < width) partial[threadIdx.x] += partial[threadIdx.x + width];
    __syncthreads();
  }
  T total = partial[0];
  __syncthreads();  // the next call may overwrite partial only once every thread has read it
  return total;
}

}  // namespace cuda
}  // namespace lenet_ext
