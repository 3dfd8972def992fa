// Helpers shared by the CUDA kernels.
#pragma once

#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <cstdint>

namespace lenet_ext {
namespace cuda {

constexpr int kThreads = 256;

// Blocks for one thread per element of an n-element output.
inline unsigned int blocks_for(int64_t n) {
  return static_cast<unsigned int>((n + kThreads - 1) / kThreads);
}

template <typename T>
__device__ __forceinline__ T sigmoid(T z) {
  return T(1) / (T(1) + exp(-z));
}

// Sum of one value per thread of a kThreads-wide block, in a fixed tree order (deterministic);
// the result is valid in thread 0.
template <typename T>
__device__ __forceinline__ T block_sum(T value) {
  __shared__ T partial[kThreads];
  partial[threadIdx.x] = value;
  __syncthreads();
  for (int width = kThreads / 2; width > 0; width /= 2) {
    if (threadIdx.x < width) partial[threadIdx.x] += partial[threadIdx.x + width];
    __syncthreads();
  }
  return partial[0];
}

}  // namespace cuda
}  // namespace lenet_ext
