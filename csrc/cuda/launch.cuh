// The launcher of the kernel headers' launch sequences on a CUDA stream, for the *_kernels.cu
// files (nvcc, no torch headers): launch(kernel, grid, block, args...) records the first launch
// error and skips the launches after it; on_stream() runs a sequence and returns that error for
// the op to raise (C10_CUDA_CHECK in the op's .cpp).
#pragma once

#include <cuda_runtime.h>

#include "device.cuh"

namespace lenet_ext {
namespace cuda {

struct CudaLaunch {
  cudaStream_t stream;
  cudaError_t* status;
  template <typename Kernel, typename... Args>
  void operator()(Kernel kernel, dim3 grid, dim3 block, Args... args) const {
    if (*status != cudaSuccess) return;
    if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;  // nothing to do (an empty grid is a launch error)
    kernel<<<grid, block, 0, stream>>>(args...);
    *status = cudaGetLastError();
  }
};

template <typename Sequence>
cudaError_t on_stream(cudaStream_t stream, Sequence&& sequence) {
  cudaError_t status = cudaSuccess;
  sequence(CudaLaunch{stream, &status});
  return status;
}

}  // namespace cuda
}  // namespace lenet_ext
