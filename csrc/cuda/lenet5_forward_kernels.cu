// The fused LeNet-5 forward (lenet5_kernels.cuh) launched on a stream, for float and double: the
// inference op (lenet5_forward.cpp) and the training forward (lenet5_train.cpp) call it.
#include "launch.cuh"
#include "launchers.h"
#include "lenet5_kernels.cuh"

namespace lenet_ext {
namespace cuda {

template <typename T>
cudaError_t launch_lenet5_forward(int64_t N, const T* images, const LeNet5Weights<T>& w, T* logits,
                                  const LeNet5Acts<T>& save, cudaStream_t stream) {
  return on_stream(stream, [&](const CudaLaunch& launch) { lenet5_forward(N, images, w, logits, save, launch); });
}

template cudaError_t launch_lenet5_forward<float>(int64_t, const float*, const LeNet5Weights<float>&, float*,
                                                  const LeNet5Acts<float>&, cudaStream_t);
template cudaError_t launch_lenet5_forward<double>(int64_t, const double*, const LeNet5Weights<double>&, double*,
                                                   const LeNet5Acts<double>&, cudaStream_t);

}  // namespace cuda
}  // namespace lenet_ext
