// LeNet-5's training backward (lenet5_backward_kernels.cuh, four launches) on a stream, for float
// and double; the op, with its checks and allocation, is lenet5_train.cpp.
#include "launch.cuh"
#include "launchers.h"
#include "lenet5_backward_kernels.cuh"

namespace lenet_ext {
namespace cuda {

template <typename T>
cudaError_t launch_lenet5_backward(const LeNet5Backward<T>& b, cudaStream_t stream) {
  return on_stream(stream, [&](const CudaLaunch& launch) { lenet5_backward(b, launch); });
}

template cudaError_t launch_lenet5_backward<float>(const LeNet5Backward<float>&, cudaStream_t);
template cudaError_t launch_lenet5_backward<double>(const LeNet5Backward<double>&, cudaStream_t);

}  // namespace cuda
}  // namespace lenet_ext
