// conv2d_sigmoid_pool's launch sequences (conv_kernels.cuh) on a stream, for float and double; the
// op, with its checks and allocation, is conv2d_sigmoid_pool.cpp.
#include "conv_kernels.cuh"
#include "launch.cuh"
#include "launchers.h"

namespace lenet_ext {
namespace cuda {

template <typename T>
cudaError_t launch_conv2d_sigmoid_pool(const ConvPool<T>& f, cudaStream_t stream) {
  return on_stream(stream, [&](const CudaLaunch& launch) { conv2d_sigmoid_pool_forward(f, launch); });
}

template <typename T>
cudaError_t launch_conv2d_sigmoid_pool_backward(const ConvPoolBackward<T>& b, bool v2, cudaStream_t stream) {
  return on_stream(stream, [&](const CudaLaunch& launch) { conv2d_sigmoid_pool_backward(b, launch, v2); });
}

#define LENET_INSTANTIATE(T)                                                            \
  template cudaError_t launch_conv2d_sigmoid_pool<T>(const ConvPool<T>&, cudaStream_t); \
  template cudaError_t launch_conv2d_sigmoid_pool_backward<T>(const ConvPoolBackward<T>&, bool, cudaStream_t);
LENET_INSTANTIATE(float)
LENET_INSTANTIATE(double)

}  // namespace cuda
}  // namespace lenet_ext
