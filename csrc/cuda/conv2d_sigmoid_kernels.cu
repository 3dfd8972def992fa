// conv2d_sigmoid's launch sequences (conv_kernels.cuh) on a stream, for float and double; the op,
// with its checks and allocation, is conv2d_sigmoid.cpp.
#include "conv_kernels.cuh"
#include "launch.cuh"
#include "launchers.h"

namespace lenet_ext {
namespace cuda {

template <typename T>
cudaError_t launch_conv2d_sigmoid(const ConvForward<T>& f, bool v2, cudaStream_t stream) {
  return on_stream(stream, [&](const CudaLaunch& launch) { conv2d_sigmoid_forward(f, launch, v2); });
}

// g = dy * y * (1 - y) (the shape of y; b.g is g), then the convolution's gradients from it.
template <typename T>
cudaError_t launch_conv2d_sigmoid_backward(const T* gy, const T* y, T* g, const ConvBackward<T>& b, bool v2,
                                           cudaStream_t stream) {
  return on_stream(stream, [&](const CudaLaunch& launch) {
    const int64_t n = b.s.N * b.s.O * b.s.OH * b.s.OW;
    if (n > 0) launch(sigmoid_grad_kernel<T>, dim3(blocks_for(n)), dim3(kThreads), gy, y, g, n);
    conv2d_backward_from_g(b, launch, v2);
  });
}

#define LENET_INSTANTIATE(T)                                                                                   \
  template cudaError_t launch_conv2d_sigmoid<T>(const ConvForward<T>&, bool, cudaStream_t);                    \
  template cudaError_t launch_conv2d_sigmoid_backward<T>(const T*, const T*, T*, const ConvBackward<T>&, bool, \
                                                         cudaStream_t);
LENET_INSTANTIATE(float)
LENET_INSTANTIATE(double)

}  // namespace cuda
}  // namespace lenet_ext
