// The CUDA ops' launch entry points: each *_kernels.cu file (nvcc, without torch's headers) defines
// its op's, for float and double, and the op (the .cpp of the same name, with torch's headers, its
// checks and allocation) calls them on the current stream. Each returns the first launch error.
// Keeping torch out of the nvcc files is what keeps the CUDA build short: nvcc parses a file once
// per GPU architecture, and torch's headers were most of each parse.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "params.h"

namespace lenet_ext {
namespace cuda {

// avg_pool2d_kernels.cu: planes = N * C images of H x W, pooled to OH x OW.
template <typename T>
cudaError_t launch_avg_pool2d(const T* x, T* y, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW, int64_t k,
                              int64_t stride, cudaStream_t stream);
template <typename T>
cudaError_t launch_avg_pool2d_backward(const T* gy, T* gx, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW,
                                       int64_t k, int64_t stride, cudaStream_t stream);

// conv2d_sigmoid_kernels.cu: the forward; the backward from dy and y through g (scratch, the
// shape of y) = dy * y * (1 - y), then b's gradients (b.g is g).
template <typename T>
cudaError_t launch_conv2d_sigmoid(const ConvForward<T>& f, bool v2, cudaStream_t stream);
template <typename T>
cudaError_t launch_conv2d_sigmoid_backward(const T* gy, const T* y, T* g, const ConvBackward<T>& b, bool v2,
                                           cudaStream_t stream);

// conv2d_sigmoid_pool_kernels.cu.
template <typename T>
cudaError_t launch_conv2d_sigmoid_pool(const ConvPool<T>& f, cudaStream_t stream);
template <typename T>
cudaError_t launch_conv2d_sigmoid_pool_backward(const ConvPoolBackward<T>& b, bool v2, cudaStream_t stream);

// linear_kernels.cu: x (M, K), w (O, K), b (O) or null, y (M, O); the backward from gy (and y
// when apply_sigmoid) through g (scratch, M x O); a null gradient is not computed.
template <typename T>
cudaError_t launch_linear(const T* x, const T* w, const T* b, T* y, int64_t M, int64_t K, int64_t O, bool apply_sigmoid,
                          bool v2, cudaStream_t stream);
template <typename T>
cudaError_t launch_linear_backward(const T* gy, const T* y, T* g, const T* x, const T* w, T* gx, T* gw, T* gb,
                                   int64_t M, int64_t K, int64_t O, bool v2, cudaStream_t stream);

// lenet5_forward_kernels.cu: the whole forward, one block per image (save: all null for inference).
template <typename T>
cudaError_t launch_lenet5_forward(int64_t N, const T* images, const LeNet5Weights<T>& w, T* logits,
                                  const LeNet5Acts<T>& save, cudaStream_t stream);

// lenet5_train_kernels.cu: the training backward's four launches.
template <typename T>
cudaError_t launch_lenet5_backward(const LeNet5Backward<T>& b, cudaStream_t stream);

}  // namespace cuda
}  // namespace lenet_ext
