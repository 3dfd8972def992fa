// Average pooling on CUDA (square window, no padding, floor mode).
//
// Forward   y[n, c, oh, ow] = (1 / k^2) * sum_{i,j < k} x[n, c, oh*s + i, ow*s + j]; one thread per output.
// Backward  dx[n, c, ih, iw] = (1 / k^2) * sum of dy over the windows that contain (ih, iw);
//           one thread per input element, gathering (deterministic, no atomics).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <array>

#include "../checks.h"
#include "common.cuh"

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

at::Tensor avg_pool2d_cuda(const at::Tensor& input, int64_t kernel_size, int64_t stride) {
  check_avg_pool2d(input, kernel_size, stride);
  const c10::cuda::CUDAGuard guard(input.device());
  const at::Tensor x = input.contiguous();
  const PoolShape s = pool_shape(x.sizes(), kernel_size, stride);
  const int64_t N = s.N, C = s.C, H = s.H, W = s.W, OH = s.OH, OW = s.OW;
  at::Tensor y = at::empty({N, C, OH, OW}, x.options());
  if (y.numel() == 0) return y;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "avg_pool2d_cuda", [&] {
    avg_pool2d_forward_kernel<scalar_t><<<blocks_for(y.numel()), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        x.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(), N * C, H, W, OH, OW, kernel_size, stride);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return y;
}

at::Tensor avg_pool2d_backward_cuda(const at::Tensor& grad_output, c10::SymIntArrayRef input_size_sym,
                                    int64_t kernel_size, int64_t stride) {
  const at::IntArrayRef input_size = C10_AS_INTARRAYREF_SLOW(input_size_sym);
  const PoolShape s = check_avg_pool2d_backward(grad_output, input_size, kernel_size, stride);
  const int64_t N = s.N, C = s.C, H = s.H, W = s.W, OH = s.OH, OW = s.OW;
  const c10::cuda::CUDAGuard guard(grad_output.device());
  const at::Tensor gy = grad_output.contiguous();
  at::Tensor gx = at::empty(input_size, gy.options());
  if (gx.numel() == 0) return gx;
  AT_DISPATCH_FLOATING_TYPES(gy.scalar_type(), "avg_pool2d_backward_cuda", [&] {
    avg_pool2d_backward_kernel<scalar_t><<<blocks_for(gx.numel()), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        gy.const_data_ptr<scalar_t>(), gx.mutable_data_ptr<scalar_t>(), N * C, H, W, OH, OW, kernel_size, stride);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return gx;
}

}  // namespace

TORCH_LIBRARY_IMPL(lenet_ext, CUDA, m) {
  m.impl("avg_pool2d", &avg_pool2d_cuda);
  m.impl("avg_pool2d_backward", &avg_pool2d_backward_cuda);
}

}  // namespace cuda
}  // namespace lenet_ext
