// Linear layer with bias and an optional fused sigmoid, on CUDA: the kernels and their launches, for
// float and double; the op, with its checks and allocation, is linear.cpp.
//
// Forward   y[m, o] = act(b[o] + sum_k x[m, k] * w[o, k]); one thread per output element.
// Backward  g = dy * y * (1 - y) if sigmoid else dy
//           dx[m, k] = sum_o g[m, o] * w[o, k]        one thread per input element
//           dw[o, k] = sum_m g[m, o] * x[m, k]        one block per weight element, fixed-order reduction
//           db[o]    = sum_m g[m, o]                  one block per output feature
// No atomics: the same inputs give the same bits. With v2 (the op passes cuda_kernels() == CudaKernels::v2,
// flags.h) the products run as tiled matrix products instead (product_kernels.cuh).
#include "launch.cuh"
#include "launchers.h"
#include "product_kernels.cuh"

namespace lenet_ext {
namespace cuda {
namespace {

template <typename T>
__global__ void linear_forward_kernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                                      T* __restrict__ y, int64_t M, int64_t K, int64_t O, bool apply_sigmoid) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= M * O) return;
  const int64_t o = idx % O, m = idx / O;
  const T* xm = x + m * K;
  const T* wo = w + o * K;
  T acc = b ? b[o] : T(0);
  for (int64_t k = 0; k < K; ++k) acc += xm[k] * wo[k];
  y[idx] = apply_sigmoid ? sigmoid(acc) : acc;
}

template <typename T>
__global__ void linear_grad_pre_kernel(const T* __restrict__ gy, const T* __restrict__ y, T* __restrict__ g,
                                       int64_t total) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx < total) g[idx] = y ? gy[idx] * y[idx] * (T(1) - y[idx]) : gy[idx];
}

template <typename T>
__global__ void linear_grad_input_kernel(const T* __restrict__ g, const T* __restrict__ w, T* __restrict__ dx,
                                         int64_t M, int64_t K, int64_t O) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= M * K) return;
  const int64_t k = idx % K, m = idx / K;
  T acc = 0;
  for (int64_t o = 0; o < O; ++o) acc += g[m * O + o] * w[o * K + k];
  dx[idx] = acc;
}

// Block per (o, k) for the weight; blocks past O*K compute the bias of o = block - O*K.
template <typename T>
__global__ void linear_grad_params_kernel(const T* __restrict__ g, const T* __restrict__ x, T* __restrict__ dw,
                                          T* __restrict__ db, int64_t M, int64_t K, int64_t O, int64_t weight_blocks) {
  const int64_t block = blockIdx.x;
  T acc = 0;
  if (block < weight_blocks) {
    const int64_t o = block / K, k = block % K;
    for (int64_t m = threadIdx.x; m < M; m += blockDim.x) acc += g[m * O + o] * x[m * K + k];
  } else {
    const int64_t o = block - weight_blocks;
    for (int64_t m = threadIdx.x; m < M; m += blockDim.x) acc += g[m * O + o];
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) (block < weight_blocks ? dw[block] : db[block - weight_blocks]) = acc;
}

}  // namespace

template <typename T>
cudaError_t launch_linear(const T* x, const T* w, const T* b, T* y, int64_t M, int64_t K, int64_t O, bool apply_sigmoid,
                          bool v2, cudaStream_t stream) {
  return on_stream(stream, [&](const CudaLaunch& launch) {
    if (v2) {  // the tiled product (product_kernels.cuh)
      dense_forward(x, w, b, y, M, K, O, apply_sigmoid, launch);
    } else {
      launch(linear_forward_kernel<T>, dim3(blocks_for(M * O)), dim3(kThreads), x, w, b, y, M, K, O, apply_sigmoid);
    }
  });
}

template <typename T>
cudaError_t launch_linear_backward(const T* gy, const T* y, T* g, const T* x, const T* w, T* gx, T* gw, T* gb,
                                   int64_t M, int64_t K, int64_t O, bool v2, cudaStream_t stream) {
  return on_stream(stream, [&](const CudaLaunch& launch) {
    if (M * O > 0) launch(linear_grad_pre_kernel<T>, dim3(blocks_for(M * O)), dim3(kThreads), gy, y, g, M * O);
    if (v2) {  // the tiled products (product_kernels.cuh)
      dense_backward(static_cast<const T*>(g), x, w, gx, gw, gb, M, K, O, launch);
      return;
    }
    if (gx != nullptr) {
      launch(linear_grad_input_kernel<T>, dim3(blocks_for(M * K)), dim3(kThreads), static_cast<const T*>(g), w, gx, M,
             K, O);
    }
    const int64_t weight_blocks = gw != nullptr ? O * K : 0;
    const int64_t blocks = weight_blocks + (gb != nullptr ? O : 0);
    if (blocks > 0) {
      launch(linear_grad_params_kernel<T>, dim3(static_cast<unsigned int>(blocks)), dim3(kThreads),
             static_cast<const T*>(g), x, gw, gb, M, K, O, weight_blocks);
    }
  });
}

#define LENET_INSTANTIATE(T)                                                                                      \
  template cudaError_t launch_linear<T>(const T*, const T*, const T*, T*, int64_t, int64_t, int64_t, bool, bool,  \
                                        cudaStream_t);                                                            \
  template cudaError_t launch_linear_backward<T>(const T*, const T*, T*, const T*, const T*, T*, T*, T*, int64_t, \
                                                 int64_t, int64_t, bool, cudaStream_t);
LENET_INSTANTIATE(float)
LENET_INSTANTIATE(double)

}  // namespace cuda
}  // namespace lenet_ext
