// Host-side helpers of the CUDA ops (stream, guard, launch checks) and the device helpers.
#pragma once

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "device.cuh"

namespace lenet_ext {
namespace cuda {

// launch(kernel, grid, block, args...) on a stream, checked: the launcher of the kernel headers'
// launch sequences (their emulator runs the same sequences on the CPU).
struct CudaLaunch {
  cudaStream_t stream;
  template <typename Kernel, typename... Args>
  void operator()(Kernel kernel, dim3 grid, dim3 block, Args... args) const {
    if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;  // nothing to do (an empty grid is a launch error)
    kernel<<<grid, block, 0, stream>>>(args...);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

}  // namespace cuda
}  // namespace lenet_ext
