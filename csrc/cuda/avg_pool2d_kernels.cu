// Average pooling on CUDA (square window, no padding, floor mode): the kernels and their launches,
// for float and double; the op, with its checks and allocation, is avg_pool2d.cpp.
//
// Forward   y[n, c, oh, ow] = (1 / k^2) * sum_{i,j < k} x[n, c, oh*s + i, ow*s + j]; one thread per output.
// Backward  dx[n, c, ih, iw] = (1 / k^2) * sum of dy over the windows that contain (ih, iw);
//           one thread per input element, gathering (deterministic, no atomics).
#include "launch.cuh"
#include "launchers.h"

namespace lenet_ext {
namespace cuda {
namespace {

template <typename T>
__global__ void avg_pool2d_forward_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t planes, int64_t H,
                                          int64_t W, int64_t OH, int64_t OW, int64_t k, int64_t stride) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= planes * OH * OW) return;
  const int64_t ow = idx % OW, oh = (idx / OW) % OH, plane = idx / (OW * OH);
  const T* xp = x + plane * H * W + (oh * stride) * W + ow * stride;
  T acc = 0;
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < k; ++j) acc += xp[i * W + j];
  y[idx] = acc / T(k * k);
}

template <typename T>
__global__ void avg_pool2d_backward_kernel(const T* __restrict__ gy, T* __restrict__ gx, int64_t planes, int64_t H,
                                           int64_t W, int64_t OH, int64_t OW, int64_t k, int64_t stride) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= planes * H * W) return;
  const int64_t iw = idx % W, ih = (idx / W) % H, plane = idx / (W * H);
  // Windows oh with oh*s <= ih < oh*s + k, likewise for ow.
  const int64_t oh_lo = ih < k ? 0 : (ih - k) / stride + 1, oh_hi = min(ih / stride, OH - 1);
  const int64_t ow_lo = iw < k ? 0 : (iw - k) / stride + 1, ow_hi = min(iw / stride, OW - 1);
  const T* gp = gy + plane * OH * OW;
  T acc = 0;
  for (int64_t oh = oh_lo; oh <= oh_hi; ++oh)
    for (int64_t ow = ow_lo; ow <= ow_hi; ++ow) acc += gp[oh * OW + ow];
  gx[idx] = acc / T(k * k);
}

}  // namespace

template <typename T>
cudaError_t launch_avg_pool2d(const T* x, T* y, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW, int64_t k,
                              int64_t stride, cudaStream_t stream) {
  return on_stream(stream, [&](const CudaLaunch& launch) {
    launch(avg_pool2d_forward_kernel<T>, dim3(blocks_for(planes * OH * OW)), dim3(kThreads), x, y, planes, H, W, OH, OW,
           k, stride);
  });
}

template <typename T>
cudaError_t launch_avg_pool2d_backward(const T* gy, T* gx, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW,
                                       int64_t k, int64_t stride, cudaStream_t stream) {
  return on_stream(stream, [&](const CudaLaunch& launch) {
    launch(avg_pool2d_backward_kernel<T>, dim3(blocks_for(planes * H * W)), dim3(kThreads), gy, gx, planes, H, W, OH,
           OW, k, stride);
  });
}

#define LENET_INSTANTIATE(T)                                                                                    \
  template cudaError_t launch_avg_pool2d<T>(const T*, T*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, \
                                            int64_t, cudaStream_t);                                             \
  template cudaError_t launch_avg_pool2d_backward<T>(const T*, T*, int64_t, int64_t, int64_t, int64_t, int64_t, \
                                                     int64_t, int64_t, cudaStream_t);
LENET_INSTANTIATE(float)
LENET_INSTANTIATE(double)

}  // namespace cuda
}  // namespace lenet_ext
